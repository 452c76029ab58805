"""Service scaffolding shared by the veil gRPC services: server, interceptors, channels, config.

See veil.rpc.server for how a service runs, veil.rpc.context for what servicers read from a call.
"""

from veil.rpc.channel import ChannelConfig, open_channel, open_sync_channel
from veil.rpc.config import ServerConfig
from veil.rpc.context import outgoing_metadata, request_id, tenant_id
from veil.rpc.internal import InternalAuthConfig
from veil.rpc.server import VeilServer, run_service

__all__ = ["ChannelConfig", "InternalAuthConfig", "ServerConfig", "VeilServer", "open_channel", "open_sync_channel", "outgoing_metadata",
           "request_id", "run_service", "tenant_id"]
