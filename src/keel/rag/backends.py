"""Where collections live, chosen by configuration: SQLite + in-memory indexes (embedded) or
Postgres + pgvector (shared by replicas). Callers never branch on the backend."""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread

from keel.config.settings import KeelSettings
from keel.errors import CollectionNotFound as CollectionNotFound
from keel.errors import ConfigError
from keel.rag.embedder import TextEmbedder, make_embedder
from keel.rag.found import Found
from keel.rag.plugins import BACKENDS


class CollectionLike(Protocol):
    name: str  # the stored key (the name, qualified by the tenant for tenants other than the default)
    label: str  # the name its tenant gave it
    tenant: str
    rerank: str
    chunk_tokens: int
    overlap: int

    def search(self, query: str, **options: Any) -> list[Found]: ...

    def set_rerank(self, spec: str) -> None: ...

    def list_documents(self) -> list[dict[str, Any]]: ...

    def document_hash(self, doc_id: str) -> str | None: ...

    def document_ids(self) -> set[str]: ...

    def index_version(self) -> str: ...

    def index_document(self, doc: Any) -> int: ...

    def delete_document(self, doc_id: str) -> bool: ...


class CollectionStore(Protocol):
    """A retrieval backend (registered in ``keel.rag.plugins.BACKENDS``): where collections live."""

    def open(
        self, tenant: str, name: str, embedder: TextEmbedder, *, create: bool = False, **options: int
    ) -> CollectionLike: ...

    def list(self, tenant: str | None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class SqliteCollections:
    """The embedded backend: the store's SQLite file, indexes in memory."""

    def __init__(self, settings: KeelSettings, home: Path) -> None:
        from keel.store.sqlite import connect, db_path

        self._conn = connect(db_path(home))

    def open(
        self, tenant: str, name: str, embedder: TextEmbedder, *, create: bool = False, **options: int
    ) -> CollectionLike:
        from keel.rag.collection import Collection, collection_key

        if create:
            return Collection.create(self._conn, name, embedder, tenant=tenant, **options)
        return Collection(self._conn, collection_key(tenant, name), embedder)

    def list(self, tenant: str | None) -> list[dict[str, Any]]:
        from keel.rag.collection import list_collections

        return list_collections(self._conn, tenant)

    def close(self) -> None:
        self._conn.close()


class PostgresCollections:
    """Postgres + pgvector, shared by every replica."""

    def __init__(self, settings: KeelSettings, home: Path) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError("the postgres retrieval backend needs psycopg: pip install 'keel[postgres]'") from None
        url = settings.retrieval_url
        assert url is not None  # checked when the settings were loaded
        try:
            self._conn = psycopg.connect(url.resolve(), autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            from keel.store.db import redact_url

            raise ConfigError(
                f"cannot connect to the retrieval database ({type(exc).__name__}: "
                f"{redact_url(str(exc).splitlines()[0])}); check retrieval.postgres_url or store.url"
            ) from None

    def open(
        self, tenant: str, name: str, embedder: TextEmbedder, *, create: bool = False, **options: int
    ) -> CollectionLike:
        from keel.rag.collection import collection_key
        from keel.rag.pg_collection import PgCollection, ensure_schema

        if create:
            return PgCollection.create(self._conn, name, embedder, tenant=tenant, **options)
        ensure_schema(self._conn)
        return PgCollection(self._conn, collection_key(tenant, name), embedder)

    def list(self, tenant: str | None) -> list[dict[str, Any]]:
        from keel.rag.pg_collection import list_pg_collections

        return list_pg_collections(self._conn, tenant)

    def close(self) -> None:
        self._conn.close()


class Backend:
    """The backend ``retrieval.backend`` names, from the registry (built-ins: embedded, postgres)."""

    def __init__(self, settings: KeelSettings, home: Path) -> None:
        self.kind = settings.retrieval_backend
        self._store: CollectionStore = BACKENDS.get(self.kind, where="retrieval.backend")(settings, home)

    def open(
        self, tenant: str, name: str, embedder: TextEmbedder, *, create: bool = False, **options: int
    ) -> CollectionLike:
        return self._store.open(tenant, name, embedder, create=create, **options)

    def exists(self, tenant: str, name: str) -> bool:
        return any(c["name"] == name for c in self.list(tenant))

    def list(self, tenant: str | None) -> list[dict[str, Any]]:
        """A tenant's collections (None: every tenant's, for the admin)."""
        return self._store.list(tenant)

    def close(self) -> None:
        self._store.close()


def _connection_lost(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


class Collections:
    """Collections opened once and kept (their indexes live in memory), on the configured backend,
    and a lock: a database connection is not shared safely across threads mid-transaction. ``run``
    calls a blocking function in a worker thread under that lock."""

    def __init__(self, settings: KeelSettings, home: Path, embedder: TextEmbedder | None = None) -> None:
        self.settings = settings
        self.home = home
        self._embedder = embedder
        self._backend: Backend | None = None
        self._open: dict[str, CollectionLike] = {}
        self._lock = threading.Lock()

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = Backend(self.settings, self.home)
        return self._backend

    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.settings, self.home)
        return self._embedder

    def embed(self, texts: list[str]) -> Any:
        """Unit vectors for ``texts`` from the configured embedder (built on first use)."""
        return self.embedder().embed(texts)

    def get(self, name: str, *, tenant: str | None = None, create: bool = False, **options: int) -> CollectionLike:
        """A tenant's collection by name (another tenant's is not found: 404, never confirmed)."""
        from keel.rag.collection import DEFAULT_TENANT, collection_key

        owner = tenant or DEFAULT_TENANT
        key = collection_key(owner, name)
        found = self._open.get(key)
        if found is None:
            if not create and not self.backend().exists(owner, name):
                raise CollectionNotFound(f"no collection '{name}'")
            embedder = self.embedder()
            scoped = getattr(embedder, "scoped", None)  # through the gateway: traced to the tenant
            found = self.backend().open(owner, name, scoped(owner) if scoped else embedder, create=create, **options)
            self._open[key] = found
        return found

    async def run(self, fn: Any, *args: Any) -> Any:
        """Call a blocking function in a worker thread, under the lock. A Postgres connection that
        the server dropped (a restart, a failover) answers 503 ``store_unavailable`` for that call,
        and the next call opens a fresh connection."""

        def locked() -> Any:
            with self._lock:
                try:
                    return fn(*args)
                except Exception as exc:
                    if not _connection_lost(exc):
                        raise
                    self._reset()
                    from keel.store.db import StoreUnavailable

                    raise StoreUnavailable("the retrieval store is unavailable; retry shortly") from exc

        return await anyio.to_thread.run_sync(locked)

    def _reset(self) -> None:
        backend, self._backend, self._open = self._backend, None, {}
        if backend is not None:
            with suppress(Exception):
                backend.close()

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        close = getattr(self._embedder, "close", None)
        if close is not None:
            close()
