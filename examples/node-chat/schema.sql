-- The chat app's own table: which (team, resource, window) has had its
-- "out of credits" message (src/notifier.js).  Run by the app's migrations;
-- the app role needs to read and write it.
CREATE TABLE IF NOT EXISTS chat_notified (
    team         text        NOT NULL,
    resource     text        NOT NULL,
    window_start timestamptz NOT NULL,
    event_id     bigint      NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team, resource, window_start)
);
