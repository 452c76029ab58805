"""Publishing a charged release: copy the accepted candidate to its release key, then mark it
published (services.gateway.state.releases describes the protocol). Both steps are idempotent, so the
recovery loop can finish a release whichever replica charged it and wherever that one died."""

from __future__ import annotations

import asyncio

from veil.errors import DataLoss
from services.gateway.state import GatewayState, ReleaseRecord
from veil.store import ObjectStore

ACTOR = "gateway"


class ReleasePublisher:
    def __init__(self, state: GatewayState, store: ObjectStore) -> None:
        self._state = state
        self._store = store

    async def publish(self, release: ReleaseRecord) -> ReleaseRecord:
        await asyncio.to_thread(self._copy, release)
        return await asyncio.to_thread(self._state.releases.mark_published, release.tenant,
                                       release.release_id, actor=ACTOR)

    def _copy(self, release: ReleaseRecord) -> None:
        store = self._store.for_tenant(release.tenant)
        info = store.copy(release.source.key, release.target.key)
        if info.sha256 is not None and info.sha256 != release.target.sha256:
            store.delete(release.target.key)
            raise DataLoss(f"release {release.release_id}: the published copy has sha256 "
                           f"{info.sha256}, the accepted candidate {release.target.sha256}")
