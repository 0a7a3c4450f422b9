-- Read-only analyst access through SQL access control (current servers whose migrating user may
-- manage access). Each statement is gated: on 18.16 (XML users only: infra/clickhouse/users.d)
-- and on engines without access management (chdb, a default user without access_management)
-- they are skipped and this migration stays pending, so it completes once the server can.
-- Users are created per person, outside migrations (no passwords in the repository):
--   CREATE USER alice IDENTIFIED WITH sha256_password BY '…' DEFAULT ROLE ioe_analyst;

-- requires: access_management
CREATE SETTINGS PROFILE IF NOT EXISTS ioe_analyst SETTINGS
    readonly = 1, max_execution_time = 60, max_memory_usage = 2000000000,
    max_rows_to_read = 2000000000, max_result_rows = 5000000, result_overflow_mode = 'throw',
    max_threads = 2;

-- requires: access_management
CREATE ROLE IF NOT EXISTS ioe_analyst SETTINGS PROFILE 'ioe_analyst';

-- requires: access_management
GRANT SELECT ON {db}.* TO ioe_analyst;

-- requires: access_management
CREATE QUOTA IF NOT EXISTS ioe_analyst FOR INTERVAL 1 hour
    MAX queries = 2000, errors = 500, execution_time = 1800 TO ioe_analyst;
