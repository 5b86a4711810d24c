-- The schema version 1 of cqrs-scheduling's SQL store, as the previous release created it on sqlite
-- (CREATE TABLE and CREATE INDEX statements of its table definitions, compiled for sqlite).

CREATE TABLE recurring_schedules (
	name VARCHAR(200) NOT NULL, 
	command_type VARCHAR(512) NOT NULL, 
	payload TEXT NOT NULL, 
	cron VARCHAR(256), 
	interval_us BIGINT, 
	timezone VARCHAR(64) NOT NULL, 
	options_json TEXT NOT NULL, 
	misfire_policy VARCHAR(16) NOT NULL, 
	paused BOOLEAN NOT NULL, 
	generation INTEGER NOT NULL, 
	next_run_at DATETIME, 
	last_run_at DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE scheduled_command_attempts (
	seq INTEGER NOT NULL, 
	entry_id VARCHAR(64) NOT NULL, 
	attempt INTEGER NOT NULL, 
	worker_id VARCHAR(256) NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME NOT NULL, 
	outcome VARCHAR(16) NOT NULL, 
	error TEXT, 
	PRIMARY KEY (seq)
);

CREATE INDEX ix_scheduled_command_attempts_entry_id ON scheduled_command_attempts (entry_id);

CREATE TABLE scheduled_commands (
	seq INTEGER NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	command_type VARCHAR(512) NOT NULL, 
	payload TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	priority INTEGER NOT NULL, 
	scheduled_for DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	completed_at DATETIME, 
	expires_at DATETIME, 
	retry_count INTEGER NOT NULL, 
	attempt_count INTEGER NOT NULL, 
	max_retries INTEGER NOT NULL, 
	correlation_id VARCHAR(256), 
	metadata_json TEXT, 
	idempotency_key VARCHAR(512), 
	error_message TEXT, 
	result_payload TEXT, 
	timeout_seconds FLOAT, 
	lease_owner VARCHAR(256), 
	lease_token VARCHAR(64), 
	lease_expires_at DATETIME, 
	recurring_name VARCHAR(200), 
	occurrence_at DATETIME, 
	PRIMARY KEY (seq), 
	UNIQUE (id), 
	UNIQUE (idempotency_key)
);

CREATE INDEX ix_scheduled_commands_correlation ON scheduled_commands (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE INDEX ix_scheduled_commands_due ON scheduled_commands (priority, scheduled_for, seq) WHERE status = 'PENDING';

CREATE INDEX ix_scheduled_commands_finished ON scheduled_commands (status, completed_at);

CREATE INDEX ix_scheduled_commands_lease ON scheduled_commands (lease_expires_at) WHERE status = 'PROCESSING';

CREATE INDEX ix_scheduled_commands_next_due ON scheduled_commands (scheduled_for) WHERE status = 'PENDING';

CREATE INDEX ix_scheduled_commands_recurring ON scheduled_commands (recurring_name) WHERE status = 'PENDING' AND recurring_name IS NOT NULL;

CREATE INDEX ix_scheduled_commands_status ON scheduled_commands (status, seq);

CREATE INDEX ix_scheduled_commands_type ON scheduled_commands (command_type, seq);

CREATE TABLE scheduled_commands_schema (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
