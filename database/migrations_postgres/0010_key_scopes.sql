-- PostgreSQL twin of database/migrations/0010_key_scopes.sql.
-- What a tenant API key may do (gateway/domain/key_scopes.py): its scopes in canonical order,
-- space-separated. Keys issued before scopes existed keep every scope.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read send config'
    CHECK (scopes IN ('read', 'send', 'config', 'read send', 'read config', 'send config',
                      'read send config'));
