"""The demo, step by step (see veil_tools.demo for what it shows)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.data import generate_dataset
from veil.db import Database, DatabaseConfig
from veil_tools.demo import dataset
from veil_tools.demo.photo import astronaut, photo_report, photo_strip, play_photo
from veil_tools.demo.registry import Registry
from veil_tools.demo.report import message, metric_summary, rounds_report, write_report
from veil_tools.demo.session import PlayedSession, describe_budget, play
from veil_tools.demo.sheet import SheetRound, contact_sheet
from veil.errors import FailedPrecondition
from veil.rpc.internal import read_secret
from veil_tools.localrun import DEV_TENANT, LocalServices
from services.gateway.state import GatewayState, UnlearningStatus
from veil.store import ObjectStore
from veil.v1 import gateway_pb2

MODEL = "demo-faces"
SUBJECT = "demo-subject"
RETENTION_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    model_uri: str | None = None  # the anonymizer's model (default: the shipped one)
    sampling_steps: int | None = None  # default: the model card's
    decode_tries: int | None = None  # verified edits; default: the anonymizer's (VEIL_DECODE_TRIES)
    candidates: int = 4
    photo_candidates: int = 2  # of the real photo (each is every face of it re-synthesized)
    protect: tuple[str, ...] = ("Male",)
    # Level 5 spends eps 2 on each protected attribute and 2 on identity; MORE then LESS end at
    # about 1.41 each, which composes to well under the cap.
    level: int = 5
    ledger_cap: float = 10.0
    accept: int = 0
    identities: int = 6
    per_identity: int = 5
    train_epochs: int = 8
    seed: int = 7
    timeout_seconds: float = 900.0


class Clock:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.marks: dict[str, float] = {}
        self._last = self.started

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {text}", flush=True)

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.marks[step] = round(now - self._last, 3)
        self._last = now


def services_for(options: DemoOptions, var: Path) -> LocalServices:
    anonymizer = {"VEIL_SAMPLING_STEPS": str(options.sampling_steps)} if options.sampling_steps else {}
    if options.decode_tries is not None:
        anonymizer["VEIL_DECODE_TRIES"] = str(options.decode_tries)
    gateway = {"VEIL_LEDGER_CAP": repr(options.ledger_cap),
               # Short periods, so the demo does not wait on the dispatcher and retention.
               "VEIL_UNLEARNING_POLL_SECONDS": "0.5", "VEIL_RECOVERY_INTERVAL_SECONDS": "2",
               # The original is deleted this long after its model update: time for the demo to
               # evaluate v2 against v1, whose training set still holds it.
               "VEIL_RETENTION_POLICY": "after_unlearning",
               "VEIL_RETENTION_GRACE_SECONDS": str(RETENTION_GRACE_SECONDS)}
    return LocalServices(var, ports="free", model_uri=options.model_uri,
                         env={"anonymizer": anonymizer, "gateway": gateway}, log_level="info")


def wait_for_unlearning(state: GatewayState, session_id: str, timeout: float) -> list[str]:
    """Job ids of the session's unlearning requests once the gateway has submitted every one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requests = state.unlearning.requests_for_session(DEV_TENANT, session_id)
        failed = [r for r in requests if r.status == UnlearningStatus.FAILED]
        if failed:
            raise FailedPrecondition(f"unlearning request {failed[0].request_id} failed: "
                                     f"{failed[0].error}")
        if requests and all(r.job_id for r in requests):
            return sorted({r.job_id for r in requests if r.job_id})
        time.sleep(0.2)
    raise FailedPrecondition(f"the gateway queued no unlearning job for {session_id} in {timeout:g} s")


def wait_for_retention(state: GatewayState, store: ObjectStore, session: gateway_pb2.Session,
                       timeout: float) -> bool:
    """Whether the gateway marked every unlearning request DONE and deleted the original (its
    audit record written, the object gone) within `timeout` seconds."""
    key = session.original.object.key
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requests = state.unlearning.requests_for_session(DEV_TENANT, session.session_id)
        recorded = any(r.action == "original.delete"
                       for r in state.audit.records(DEV_TENANT, target=key))
        if recorded and all(r.status == UnlearningStatus.DONE for r in requests):
            return not store.exists(key)
        time.sleep(0.2)
    return False


def audit_trail(state: GatewayState) -> list[dict[str, Any]]:
    return [{"at": r.at.isoformat(), "actor": r.actor, "action": r.action, "target": r.target,
             "outcome": r.outcome, "model_versions": list(r.model_versions)}
            for r in state.audit.records(DEV_TENANT, limit=10_000)]


def released_values(candidate: gateway_pb2.SessionCandidate) -> str:
    """e.g. "Male released +1": what the mechanism let through for each protected attribute."""
    return ", ".join(f"{a.attribute} released {a.released_value:+g}"
                     for a in candidate.receipt.attributes)


def sheet_rounds(played: PlayedSession) -> list[SheetRound]:
    return [SheetRound(f"round {r.message.number}: {describe_budget(r.message)}  -> {r.answer}",
                       r.images, [released_values(c) for c in r.message.candidates])
            for r in played.rounds]


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the whole demo; returns the report (also written under <out>/demo/)."""
    clock = Clock()
    out = options.out / "demo"
    var = out / "var"
    shutil.rmtree(var, ignore_errors=True)  # a fresh ledger and model registry every run
    shutil.rmtree(out / "faces", ignore_errors=True)
    services = services_for(options, var)
    clock.say("starting anonymizer, unlearner and gateway on loopback ...")
    with services:
        clock.mark("start_services")
        clock.say(f"serving: gateway {services.gateway.target}, logs in {var / 'logs'}")
        state = GatewayState(Database.from_config(DatabaseConfig(url=services.database_url("gateway"))))
        tenant_store = services.store().for_tenant(DEV_TENANT)
        secret = read_secret(str(services.internal_secret_file))
        with services.client() as client, Registry(services.unlearner.target, DEV_TENANT, secret) as registry:
            size = services.model_info().image_size
            faces = generate_dataset(out / "faces", identities=options.identities,
                                     per_identity=options.per_identity, seed=options.seed,
                                     size=size, workers=1)
            data = dataset.build(client, tenant_store, faces,
                                 list(options.protect), f"datasets/{MODEL}/manifest.json")
            clock.say(f"{len(data.manifest.train)} training and {len(data.manifest.test)} test "
                      f"faces ({size} px) uploaded; training {MODEL} ...")
            trained = registry.wait(registry.train(MODEL, data.manifest_ref,
                                                   epochs=options.train_epochs,
                                                   seed=options.seed).job_id,
                                    options.timeout_seconds)
            before = registry.versions(MODEL)
            clock.mark("train")
            clock.say(f"trained {MODEL} {trained.result_version}")

            played = play(client, data.subject_png, subject=SUBJECT, protect=list(options.protect),
                          level=options.level, candidates=options.candidates,
                          accept=options.accept, seed=options.seed, say=clock.say)
            clock.mark("session")
            photo = play_photo(client, astronaut(), protect=list(options.protect),
                               candidates=options.photo_candidates, seed=options.seed, say=clock.say)
            clock.mark("photo")

            job_ids = wait_for_unlearning(state, played.session.session_id, options.timeout_seconds)
            jobs = [registry.wait(job_id, options.timeout_seconds) for job_id in job_ids]
            after = registry.versions(MODEL)
            updated = jobs[0].result_version
            evaluation = registry.evaluate(MODEL, updated, reference=trained.result_version)
            clock.say(f"unlearning job {jobs[0].job_id} wrote {MODEL} {updated}")
            original_deleted = wait_for_retention(state, tenant_store, played.session,
                                                  RETENTION_GRACE_SECONDS + 30.0)
            audit = audit_trail(state)
            clock.mark("unlearning")
            ledger = client.ledger(SUBJECT)
            metrics = {name: metric_summary(samples) for name, samples in services.metrics().items()}
        state.close()
    clock.mark("stop_services")

    assert played.release is not None and played.released is not None
    photo_path = out / "photo.png"
    photo_strip(photo).save(photo_path)
    sheet_path = out / "contact_sheet.png"
    accepted_round = len(played.rounds) - 1
    contact_sheet(f"veil demo: session {played.session.session_id}, protecting "
                  f"{', '.join(options.protect)}", data.subject_pixels, sheet_rounds(played),
                  played.released, accepted_round, options.accept).save(sheet_path)
    report = {
        "session": {"session_id": played.session.session_id, "subject_id": SUBJECT,
                    "protect": list(options.protect), "level": options.level,
                    "candidates_per_round": options.candidates,
                    "state": message(played.session)["state"]},
        "rounds": rounds_report(played),
        "eps_per_round": [{"round": r.message.number, **dict(r.message.attribute_epsilon),
                           "identity": r.message.identity_epsilon} for r in played.rounds],
        "release": {**message(played.release), "round": accepted_round + 1,
                    "candidate": options.accept},
        "ledger": message(ledger),
        "photo": photo_report(photo),
        "models": {"model": MODEL, "trained_version": trained.result_version,
                   "updated_version": updated,
                   "updated_card": json.loads(
                       next(v.card_json for v in after if v.version == updated)),
                   "before": [message(v) for v in before], "after": [message(v) for v in after]},
        "training_job": message(trained),
        "unlearning_jobs": [message(job) for job in jobs],
        "unlearning_evaluation": evaluation,
        "original_deleted": original_deleted,
        "audit": audit,
        "metrics": metrics,
        "timings_seconds": {**clock.marks,
                            "total": round(time.perf_counter() - clock.started, 3)},
        "outputs": {"contact_sheet": str(sheet_path), "photo": str(photo_path), "services_var": str(var)},
    }
    write_report(out / "report.json", report)
    clock.say(f"wrote {sheet_path}, {photo_path} and {out / 'report.json'}")
    return report
