"""Object storage for images and checkpoints: one interface, a local-directory backend (the
embedded default) and an S3 backend (MinIO in production).

    store = open_store(from_env(StoreConfig))
    store.ensure_bucket()
    tenant = store.for_tenant("acme")
    info = tenant.put("uploads/a.png", data, content_type="image/png")
    data = tenant.get(info.key, expected_sha256=info.sha256)

The store is synchronous; async code calls it through asyncio.to_thread.
"""

from veil.store.base import DEFAULT_CONTENT_TYPE, ObjectInfo, ObjectStore
from veil.store.config import StoreConfig, open_store
from veil.store.keys import validate_key, validate_tenant_id
from veil.store.local import LocalStore
from veil.store.convert import from_object_ref, to_object_ref
from veil.store.tenant import TenantStore

__all__ = [
    "DEFAULT_CONTENT_TYPE", "LocalStore", "ObjectInfo", "ObjectStore", "StoreConfig", "TenantStore",
    "from_object_ref", "open_store", "to_object_ref", "validate_key", "validate_tenant_id",
]
