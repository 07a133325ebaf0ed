-- 0003_stripe_events: the gateway's inbox of verified Stripe webhook events.
--
-- A delivery is acknowledged once its event is stored here (its signature checked first), and processed after,
-- off the request path, by the gateway's workers: so Stripe gets its 2xx at once, and an event acknowledged is
-- never lost (a gateway that dies mid-way leaves the row pending; the next worker takes it up). The event id is
-- the key: a redelivered event finds its row and is acknowledged without being processed again.
--
-- The payload carries personal data (names, e-mail, addresses), so it is kept only sealed with the personal-data
-- keys (AES-256-GCM, associated data binding it to the event id), and only until it is processed: payload_enc is
-- set to NULL then. What remains is the type, the outcome and the transaction it concerned.
CREATE TABLE stripe_events (
    event_id        text        PRIMARY KEY CHECK (event_id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
    type            text        NOT NULL CHECK (type <> '' AND length(type) <= 100),
    livemode        boolean     NOT NULL DEFAULT false,
    created         timestamptz NOT NULL,                 -- the event's own time, as Stripe set it
    received_at     timestamptz NOT NULL DEFAULT now(),
    payload_enc     bytea,
    personal_key_id text,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'ignored', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),   -- a worker leases a row by moving this forward
    processed_at    timestamptz,
    transaction_id  text,                                 -- the payment the event was about, when it was one
    result          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(result) = 'object'),
    last_error      text,
    CONSTRAINT stripe_events_sealed CHECK ((payload_enc IS NULL) = (personal_key_id IS NULL)),
    CONSTRAINT stripe_events_pending_have_payload CHECK (state <> 'pending' OR payload_enc IS NOT NULL)
);
CREATE INDEX stripe_events_pending_idx ON stripe_events (next_attempt_at) WHERE state = 'pending';
CREATE INDEX stripe_events_transaction_idx ON stripe_events (transaction_id) WHERE transaction_id IS NOT NULL;
