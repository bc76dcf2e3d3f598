"""The embedded store's schema: a numbered list of migrations, applied in order by
:func:`keel.store.sqlite.migrate` (Postgres has its own list in ``keel.store.migrations``)."""

from __future__ import annotations

from keel.store.monitors import monitor_tables
from keel.store.review_rows import review_tables

MIGRATIONS: list[str] = [
    # 1: API keys and traces
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        revoked REAL
    );
    CREATE TABLE traces (
        id TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        tenant TEXT, user TEXT, feature TEXT,
        operation TEXT NOT NULL,
        alias TEXT, deployment TEXT, provider TEXT, model TEXT,
        stream INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        http_status INTEGER,
        error_type TEXT, error TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_tokens INTEGER NOT NULL DEFAULT 0,
        usage_source TEXT,
        cost_usd REAL,
        cost_source TEXT,
        latency_ms REAL,
        ttft_ms REAL,
        attempts TEXT,
        request TEXT,
        response TEXT
    );
    CREATE INDEX traces_ts ON traces(ts);
    CREATE INDEX traces_tenant_ts ON traces(tenant, ts);
    """,
    # 2: retrieval collections, documents, chunks and the embedding cache
    """
    CREATE TABLE rag_collections (
        name TEXT PRIMARY KEY,
        created REAL NOT NULL,
        embedder TEXT NOT NULL,
        dims INTEGER NOT NULL,
        chunk_tokens INTEGER NOT NULL,
        overlap INTEGER NOT NULL,
        version INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE rag_documents (
        collection TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        source TEXT, kind TEXT, title TEXT,
        hash TEXT NOT NULL,
        chunks INTEGER NOT NULL,
        indexed REAL NOT NULL,
        PRIMARY KEY (collection, doc_id)
    );
    CREATE TABLE rag_chunks (
        collection TEXT NOT NULL,
        chunk_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL,
        heading_path TEXT NOT NULL,
        page INTEGER,
        start_offset INTEGER NOT NULL,
        end_offset INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        terms TEXT NOT NULL,
        embedding BLOB NOT NULL,
        PRIMARY KEY (collection, chunk_id)
    );
    CREATE INDEX rag_chunks_doc ON rag_chunks(collection, doc_id);
    CREATE TABLE rag_embed_cache (
        hash TEXT NOT NULL,
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (hash, model)
    );
    """,
    # 3: a reranker per collection
    """
    ALTER TABLE rag_collections ADD COLUMN rerank TEXT NOT NULL DEFAULT 'none';
    """,
    # 4: prompt versions, labels and every label move
    """
    CREATE TABLE prompt_versions (
        prompt TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL,
        source TEXT NOT NULL,
        git_commit TEXT, git_author TEXT,
        created REAL NOT NULL,
        PRIMARY KEY (prompt, version),
        UNIQUE (prompt, hash)
    );
    CREATE TABLE prompt_labels (
        prompt TEXT NOT NULL,
        label TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (prompt, label)
    );
    CREATE TABLE prompt_label_moves (
        prompt TEXT NOT NULL,
        label TEXT NOT NULL,
        from_version INTEGER,
        to_version INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
    # 5: feature runs as parent traces with prompt version and experiment arm; experiments; feedback
    """
    ALTER TABLE traces ADD COLUMN parent TEXT;
    ALTER TABLE traces ADD COLUMN prompt TEXT;
    ALTER TABLE traces ADD COLUMN prompt_version INTEGER;
    ALTER TABLE traces ADD COLUMN experiment TEXT;
    ALTER TABLE traces ADD COLUMN arm TEXT;
    ALTER TABLE traces ADD COLUMN notes TEXT;
    CREATE INDEX traces_experiment ON traces(experiment, arm) WHERE experiment IS NOT NULL;
    CREATE INDEX traces_parent ON traces(parent) WHERE parent IS NOT NULL;
    CREATE TABLE experiments (
        name TEXT PRIMARY KEY,
        feature TEXT NOT NULL,
        arms TEXT NOT NULL,
        status TEXT NOT NULL,
        started REAL NOT NULL,
        stopped REAL,
        winner TEXT,
        note TEXT
    );
    CREATE UNIQUE INDEX experiments_running ON experiments(feature) WHERE status = 'running';
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trace_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        label TEXT,
        comment TEXT,
        correction TEXT,
        user TEXT,
        at REAL NOT NULL
    );
    CREATE INDEX feedback_trace ON feedback(trace_id);
    """,
    # 6: eval runs and their per-case results
    """
    CREATE TABLE eval_runs (
        id TEXT PRIMARY KEY,
        suite TEXT NOT NULL,
        feature TEXT NOT NULL,
        started REAL NOT NULL,
        finished REAL,
        status TEXT NOT NULL,
        label TEXT,
        summary TEXT NOT NULL
    );
    CREATE INDEX eval_runs_suite ON eval_runs(suite, label, started);
    CREATE TABLE eval_results (
        run_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (run_id, case_id)
    );
    """,
    # 7: eval results cached by what produced them, and which traces became eval cases
    """
    CREATE TABLE eval_cache (
        key TEXT PRIMARY KEY,
        suite TEXT NOT NULL,
        case_id TEXT NOT NULL,
        result TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE eval_promoted (
        suite TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        case_id TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (suite, trace_id)
    );
    """,
    # 8: budgets on the embedded ledger: spend per bucket, and the holds of calls in flight
    """
    CREATE TABLE budget_spend (
        bucket TEXT PRIMARY KEY,
        spent_nusd INTEGER NOT NULL DEFAULT 0,
        spent_tokens INTEGER NOT NULL DEFAULT 0,
        alerted REAL NOT NULL DEFAULT 0,
        expires REAL NOT NULL
    );
    CREATE TABLE budget_holds (
        reservation TEXT NOT NULL,
        bucket TEXT NOT NULL,
        nusd INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (reservation, bucket)
    );
    CREATE INDEX budget_holds_bucket ON budget_holds(bucket, expires);
    """,
    # 9: cached feature answers (exact key; semantic neighbours within a scope)
    """
    CREATE TABLE cache_entries (
        key TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        feature TEXT NOT NULL,
        text TEXT NOT NULL,
        vector BLOB,
        value TEXT NOT NULL,
        trace_id TEXT,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX cache_entries_scope ON cache_entries(scope, created);
    CREATE INDEX cache_entries_feature ON cache_entries(feature);
    """,
    # 10: tenants on every stored object, roles on keys, label moves in an explicit order with their actor
    """
    ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
    CREATE TABLE tenants (name TEXT PRIMARY KEY, created REAL NOT NULL, deleted REAL);
    INSERT OR IGNORE INTO tenants(name, created) SELECT DISTINCT tenant, min(created) FROM api_keys GROUP BY tenant;
    UPDATE traces SET tenant = 'default' WHERE tenant IS NULL;
    CREATE INDEX traces_tenant_feature ON traces(tenant, feature, ts);
    ALTER TABLE feedback ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    UPDATE feedback SET tenant = coalesce((SELECT t.tenant FROM traces t WHERE t.id = feedback.trace_id), 'default');
    CREATE TABLE label_moves (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        prompt TEXT NOT NULL,
        label TEXT NOT NULL,
        from_version INTEGER,
        to_version INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        tenant TEXT NOT NULL DEFAULT 'default',
        actor TEXT
    );
    INSERT INTO label_moves(prompt, label, from_version, to_version, reason, at)
        SELECT prompt, label, from_version, to_version, reason, at FROM prompt_label_moves ORDER BY rowid;
    DROP TABLE prompt_label_moves;
    CREATE INDEX label_moves_prompt ON label_moves(prompt, label, seq);
    CREATE TABLE tenant_experiments (
        tenant TEXT NOT NULL DEFAULT 'default',
        name TEXT NOT NULL,
        feature TEXT NOT NULL,
        arms TEXT NOT NULL,
        status TEXT NOT NULL,
        started REAL NOT NULL,
        stopped REAL,
        winner TEXT,
        note TEXT,
        PRIMARY KEY (tenant, name)
    );
    INSERT INTO tenant_experiments(name, feature, arms, status, started, stopped, winner, note)
        SELECT name, feature, arms, status, started, stopped, winner, note FROM experiments;
    DROP TABLE experiments;
    CREATE UNIQUE INDEX tenant_experiments_running ON tenant_experiments(tenant, feature) WHERE status = 'running';
    ALTER TABLE eval_runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE eval_cache ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE eval_promoted ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE cache_entries ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE rag_collections ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE rag_collections ADD COLUMN label TEXT;
    UPDATE rag_collections SET label = name;
    """,
    # 11: hourly rollups of model calls (what dashboards read), backfilled from the traces there are
    """
    CREATE TABLE trace_hours (
        tenant TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        feature TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        latency_ms_sum REAL NOT NULL,
        PRIMARY KEY (tenant, bucket, feature, model)
    );
    CREATE TABLE trace_latency (
        tenant TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        feature TEXT NOT NULL,
        bin INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (tenant, bucket, feature, bin)
    );
    """,
    # 12: what failed, found without scanning what did not (the dashboard's Failures page)
    "CREATE INDEX traces_failures ON traces(tenant, ts) WHERE status <> 'ok';",
    # 13: rollups by feature, model, user and tenant at five minutes, hours and days, with time to first
    # token and cache reads (the dashboard's Overview), replacing the hourly ones; backfilled. And a
    # feature run's steps (the trace page's span tree)
    """
    DROP TABLE trace_hours;
    DROP TABLE trace_latency;
    CREATE TABLE trace_rollup (
        tenant TEXT NOT NULL,
        grain INTEGER NOT NULL,
        bucket INTEGER NOT NULL,
        dim TEXT NOT NULL,
        value TEXT NOT NULL,
        runs INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        latency_ms_sum REAL NOT NULL,
        ttft_ms_sum REAL NOT NULL,
        ttft_n INTEGER NOT NULL,
        PRIMARY KEY (tenant, grain, dim, bucket, value)
    );
    CREATE INDEX trace_rollup_all ON trace_rollup(grain, dim, bucket);
    CREATE TABLE trace_bins (
        tenant TEXT NOT NULL,
        grain INTEGER NOT NULL,
        bucket INTEGER NOT NULL,
        dim TEXT NOT NULL,
        value TEXT NOT NULL,
        kind TEXT NOT NULL,
        bin INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (tenant, grain, dim, bucket, value, kind, bin)
    );
    CREATE INDEX trace_bins_all ON trace_bins(grain, dim, bucket);
    ALTER TABLE traces ADD COLUMN steps TEXT;
    """,
    # 14: durable jobs (keel.store.jobs): a queue with leases, idempotency keys and progress
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        payload TEXT NOT NULL,
        feature TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        run_after REAL NOT NULL,
        lease_until REAL,
        worker TEXT,
        done INTEGER,
        total INTEGER,
        stage TEXT,
        cost_usd REAL,
        trace_id TEXT,
        webhook TEXT,
        idempotency_key TEXT,
        body_hash TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        expires REAL
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs(tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_ready ON jobs(priority DESC, run_after) WHERE status = 'queued';
    CREATE INDEX jobs_leases ON jobs(lease_until) WHERE status = 'running';
    CREATE INDEX jobs_tenant ON jobs(tenant, created);
    """,
    # 15: the Batch API (keel.store.batches: files, batches, their lines) and webhooks (keel.store.webhooks)
    """
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        content BLOB NOT NULL,
        created REAL NOT NULL,
        expires REAL
    );
    CREATE INDEX files_tenant ON files(tenant, created);
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        status TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        job_id TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        total INTEGER NOT NULL,
        metadata TEXT,
        errors TEXT,
        reserved_usd REAL,
        key TEXT,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        in_progress_at REAL,
        finalizing_at REAL,
        completed_at REAL,
        failed_at REAL,
        expired_at REAL,
        cancelling_at REAL,
        cancelled_at REAL
    );
    CREATE INDEX batches_tenant ON batches(tenant, created);
    CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        ok INTEGER NOT NULL,
        status_code INTEGER,
        body TEXT,
        error TEXT,
        cost_usd REAL,
        trace_id TEXT,
        finished REAL NOT NULL,
        PRIMARY KEY (batch_id, line)
    );
    CREATE TABLE webhook_endpoints (
        tenant TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (tenant, url)
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        log TEXT,
        created REAL NOT NULL,
        delivered REAL,
        give_up REAL NOT NULL
    );
    CREATE INDEX webhook_due ON webhook_deliveries(next_at) WHERE status = 'pending';
    CREATE INDEX webhook_subject ON webhook_deliveries(tenant, subject);
    """,
    review_tables("REAL"),  # 16: review items (keel.store.reviews)
    monitor_tables("REAL", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),  # 17: monitors (keel.store.monitors)
]
BACKFILL = {13}  # migrations followed, in their transaction, by the rollup backfill (the first rollups' step
# has nothing left to fill: their tables are dropped by this one)
