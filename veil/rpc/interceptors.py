"""grpc.aio server interceptors: request id, access log, Prometheus metrics, error mapping.

Each interceptor runs an async context manager (`around`) around the whole RPC, whatever its
arity: for streaming responses the context spans the iteration, so durations, codes and error
mapping cover every message. `wrap_handler` keeps the handler's style: coroutine handlers that
write with `context.write()` (like grpc's health Watch) stay coroutines, async generators stay
generators, because the aio server dispatches on that.

The server installs them in this order (outermost first):
RequestIdInterceptor, AccessLogInterceptor, MetricsInterceptor, ErrorMappingInterceptor.
ErrorMapping is innermost so the others see the final status code. It also turns request bytes
that do not parse into INVALID_ARGUMENT (grpc would answer UNKNOWN or INTERNAL with a traceback
in the log, outside the interceptors' view) and bounds every status message it sends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Histogram

from veil import errors
from veil.log import request_id_var
from veil.rpc.context import REQUEST_ID_KEY, accepted_request_id, metadata_value

log = logging.getLogger("veil.rpc")
HEALTH_SERVICE = "grpc.health.v1.Health"

STATUS_BY_ERROR: dict[type[errors.VeilError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.ConfigError: grpc.StatusCode.INTERNAL,
    errors.VeilError: grpc.StatusCode.INTERNAL,
}

# Codes that mean "the service failed" rather than "the caller asked for something it can't have".
SERVER_FAULT_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS,
                      grpc.StatusCode.UNIMPLEMENTED}

_LABELS = ("grpc_service", "grpc_method", "grpc_type")
RPC_STARTED = Counter("veil_grpc_server_started_total", "RPCs started on the server", _LABELS)
RPC_HANDLED = Counter("veil_grpc_server_handled_total", "RPCs completed on the server, by status code",
                      (*_LABELS, "grpc_code"))
RPC_SECONDS = Histogram("veil_grpc_server_handling_seconds", "Time from RPC start to its status",
                        (*_LABELS, "grpc_code"),
                        buckets=(0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))


def status_for(exc: errors.VeilError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return grpc.StatusCode.INTERNAL


# Status messages travel in a trailer (clients refuse metadata over 16 KiB, percent-encoding
# triples non-ASCII bytes): longer ones are cut.
MAX_STATUS_MESSAGE_CHARS = 1000


def bounded_message(message: str) -> str:
    if len(message) <= MAX_STATUS_MESSAGE_CHARS:
        return message
    return (f"{message[:MAX_STATUS_MESSAGE_CHARS]}... "
            f"(message cut at {MAX_STATUS_MESSAGE_CHARS} of {len(message)} characters)")


@dataclass(frozen=True)
class UndecodableRequest:
    """Stands in for a request message whose bytes did not parse, until the error mapping
    refuses it (a deserializer's exception would escape the interceptors)."""

    reason: str


def tolerant_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return UndecodableRequest(str(exc))
    return deserialize


class UndecodableRequestError(errors.InvalidArgument):
    pass


def decoded(request: Any, method: str) -> Any:
    if isinstance(request, UndecodableRequest):
        raise UndecodableRequestError(f"undecodable {method.rpartition('/')[2]} request ({request.reason})")
    return request


async def decoded_stream(requests: AsyncIterator[Any], method: str) -> AsyncIterator[Any]:
    async for request in requests:
        yield decoded(request, method)


@dataclass(frozen=True)
class RpcCall:
    """One RPC as the interceptors see it."""

    method: str  # "/veil.v1.Anonymizer/GetModelInfo"
    service: str
    name: str
    kind: str  # unary, client_stream, server_stream, bidi_stream
    context: grpc.aio.ServicerContext
    # Read when the call starts: grpc's aio server may have destroyed a cancelled call by the time
    # it ends, and context.peer() on it then dereferences a null pointer in grpc's core.
    peer: str


def final_code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    """The status the RPC ends with, seen from outside the error mapping."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if code is not None:
        return code
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


Around = Callable[[RpcCall], AbstractAsyncContextManager[None]]
_KINDS = {(False, False): "unary", (True, False): "client_stream",
          (False, True): "server_stream", (True, True): "bidi_stream"}
_FACTORIES = {(False, False): grpc.unary_unary_rpc_method_handler,
              (True, False): grpc.stream_unary_rpc_method_handler,
              (False, True): grpc.unary_stream_rpc_method_handler,
              (True, True): grpc.stream_stream_rpc_method_handler}


def wrap_handler(handler: grpc.RpcMethodHandler, method: str, around: Around,
                 decode_inside: bool = False) -> grpc.RpcMethodHandler:
    """`handler` with each call run inside `around(call)`, for all four arities. With
    `decode_inside`, requests that did not parse raise UndecodableRequestError inside `around`."""
    arity = (handler.request_streaming, handler.response_streaming)
    behavior = (handler.stream_stream or handler.unary_stream if handler.response_streaming
                else handler.stream_unary or handler.unary_unary)
    service, _, name = method.lstrip("/").rpartition("/")

    def call(context: grpc.aio.ServicerContext) -> RpcCall:
        return RpcCall(method, service, name, _KINDS[arity], context, context.peer())

    def checked(request: Any) -> Any:
        if not decode_inside:
            return request
        return decoded_stream(request, method) if handler.request_streaming else decoded(request, method)

    wrapped: Callable[..., Any]
    if not handler.response_streaming:
        async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(call(context)):
                result = behavior(checked(request), context)
                return await result if inspect.isawaitable(result) else result
        wrapped = unary_response
    elif inspect.iscoroutinefunction(behavior):
        async def written_responses(request: Any, context: grpc.aio.ServicerContext) -> None:
            async with around(call(context)):
                await behavior(checked(request), context)
        wrapped = written_responses
    else:
        async def yielded_responses(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(call(context)):
                responses = behavior(checked(request), context)
                if hasattr(responses, "__aiter__"):
                    async for response in responses:
                        yield response
                else:
                    for response in responses:
                        yield response
        wrapped = yielded_responses
    deserializer = handler.request_deserializer
    if decode_inside:
        deserializer = tolerant_deserializer(deserializer)
    return _FACTORIES[arity](wrapped, request_deserializer=deserializer,
                             response_serializer=handler.response_serializer)


class AroundInterceptor(grpc.aio.ServerInterceptor):
    """Base class: subclasses implement `around`."""

    decode_inside = False

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: the server answers UNIMPLEMENTED
            return handler
        return wrap_handler(handler, handler_call_details.method, self.around, self.decode_inside)

    def around(self, call: RpcCall) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError


class RequestIdInterceptor(AroundInterceptor):
    """Takes the caller's `x-request-id` (or makes one), exposes it through veil.rpc.request_id()
    and the log lines, and returns it in the trailing metadata. (Not in the initial metadata:
    response headers commit a call, which would disable the clients' retries on UNAVAILABLE.
    Servicers that set trailing metadata must keep this entry.)"""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[override]
        # The aio server runs all interceptors and the handler in one fresh contextvars.Context.
        incoming = metadata_value(handler_call_details.invocation_metadata, REQUEST_ID_KEY)
        request_id_var.set(accepted_request_id(incoming))
        return await super().intercept_service(continuation, handler_call_details)

    @asynccontextmanager
    async def around(self, call: RpcCall) -> AsyncIterator[None]:
        call.context.set_trailing_metadata(((REQUEST_ID_KEY, request_id_var.get() or ""),))
        yield


class OutcomeInterceptor(AroundInterceptor):
    """Base class: `finished(call, code, seconds)` once each RPC has its final status."""

    def started(self, call: RpcCall) -> None:
        pass

    def finished(self, call: RpcCall, code: grpc.StatusCode, seconds: float) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def around(self, call: RpcCall) -> AsyncIterator[None]:
        self.started(call)
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.finished(call, final_code(call.context, failure), time.perf_counter() - start)


class AccessLogInterceptor(OutcomeInterceptor):
    """One JSON log line per RPC: method, code, duration, peer (the formatter adds the request
    id). Never payloads."""

    def finished(self, call: RpcCall, code: grpc.StatusCode, seconds: float) -> None:
        level = (logging.ERROR if code in SERVER_FAULT_CODES
                 else logging.DEBUG if call.service == HEALTH_SERVICE  # probes every few seconds
                 else logging.INFO)
        log.log(level, "rpc %s %s", call.method, code.name, extra={"fields": {
            "event": "rpc", "method": call.method, "grpc_type": call.kind, "code": code.name,
            "duration_s": round(seconds, 6), "peer": call.peer}})


class MetricsInterceptor(OutcomeInterceptor):
    """veil_grpc_server_{started_total, handled_total, handling_seconds}."""

    def started(self, call: RpcCall) -> None:
        RPC_STARTED.labels(call.service, call.name, call.kind).inc()

    def finished(self, call: RpcCall, code: grpc.StatusCode, seconds: float) -> None:
        labels = (call.service, call.name, call.kind, code.name)
        RPC_HANDLED.labels(*labels).inc()
        RPC_SECONDS.labels(*labels).observe(seconds)


class ErrorMappingInterceptor(AroundInterceptor):
    """veil.errors.* -> their status code and message; NotImplementedError -> UNIMPLEMENTED;
    anything else -> INTERNAL with a generic message (the traceback goes to the log only).
    Request bytes that do not parse are INVALID_ARGUMENT, logged once as a warning."""

    decode_inside = True

    @asynccontextmanager
    async def around(self, call: RpcCall) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:  # the servicer aborted with a status of its own
            raise
        except errors.VeilError as exc:
            code = status_for(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.error("%s failed: %s", call.method, exc, exc_info=exc)
            elif isinstance(exc, UndecodableRequestError):
                log.warning("%s refused: %s", call.method, exc)
            await call.context.abort(code, bounded_message(str(exc)))
        except NotImplementedError:
            await call.context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{call.method} is not implemented")
        except Exception as exc:
            log.error("%s failed with an unexpected error", call.method, exc_info=exc)
            await call.context.abort(grpc.StatusCode.INTERNAL,
                                     f"internal error (request id {request_id_var.get()})")
