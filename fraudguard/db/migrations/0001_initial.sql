-- 0001_initial: transactions, decisions, labels, model bundles, API keys, audit log, federation.
--
-- Conventions
-- * Times are timestamptz. A "day" is a UTC calendar day (date).
-- * Closed sets (actions, labels, statuses, channels) are text with a CHECK, not enum types: a later migration
--   widens a CHECK in one transactional ALTER, while an enum value can be added but never removed.
-- * A card is a token (a keyed HMAC of the PAN), a BIN and the last four digits; never a PAN. A CHECK refuses
--   a token of 12 to 19 digits, which is what a PAN (or a PAN-shaped network token) in the token field is.
-- * Personal fields kept for investigation (device id, IP address, e-mail) are stored only as AES-256-GCM
--   ciphertext (bytea, nonce || ciphertext || tag) with the id of the key that sealed the row's personal
--   fields (personal_key_id), so keys rotate and old rows stay readable. No ciphertext without a key id.
--
-- Partitioning and idempotency
-- transactions and decisions are partitioned by RANGE on event_day, one partition per day, made ahead and
-- dropped after the retention by fraudguard.db.partitions.ensure_partitions. There is no DEFAULT partition: a
-- row for a day without a partition is refused (see that module for why).
--
-- PostgreSQL requires a unique key on a partitioned table to contain every partition-key column, and it allows
-- neither an expression nor a generated column there. So event_day is an ordinary column that the writer fills
-- in, and a CHECK holds it to the UTC day of event_time. The key is (transaction_id, event_day): the writer's
-- retries and the journal's replays carry the transaction's own event time, so they hit the same key and
-- INSERT ... ON CONFLICT DO NOTHING (or COPY into a staging table, then that) writes each decision once. Keying
-- on event_day rather than event_time also catches a replay whose timestamp lost precision on the way. What it
-- does not catch is one transaction id sent again with an event time on another day: a key unique across all
-- days needs an unpartitioned table of ids, a second write per transaction on the hot path's writer, for a
-- case that processors' unique transaction ids already rule out.
--
-- labels carry no foreign key to transactions: that key would have to include event_day, and it would forbid
-- dropping a partition while labels of its transactions remain (chargebacks arrive months later).

CREATE TABLE transactions (
    transaction_id   text             NOT NULL CHECK (transaction_id <> ''),
    event_time       timestamptz      NOT NULL,
    event_day        date             NOT NULL,
    received_at      timestamptz      NOT NULL DEFAULT now(),
    card_token       text             NOT NULL CHECK (card_token <> '' AND card_token !~ '^[0-9]{12,19}$'),
    card_bin         text             CHECK (card_bin ~ '^[0-9]{6,8}$'),
    card_last4       text             CHECK (card_last4 ~ '^[0-9]{4}$'),
    customer_id      text,
    merchant_id      text             NOT NULL CHECK (merchant_id <> ''),
    mcc              integer          CHECK (mcc BETWEEN 0 AND 9999),
    merchant_country text             CHECK (merchant_country ~ '^[A-Z]{2}$'),
    channel          text             NOT NULL DEFAULT 'unspecified' CHECK (channel IN
                         ('unspecified', 'card_present', 'ecommerce', 'moto', 'in_app', 'recurring', 'atm')),
    entry_mode       text             NOT NULL DEFAULT 'unspecified' CHECK (entry_mode IN
                         ('unspecified', 'chip', 'contactless', 'magstripe', 'manual', 'card_on_file', 'wallet')),
    amount_minor     bigint           NOT NULL CHECK (amount_minor >= 0),
    currency         text             NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    latitude         double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude        double precision CHECK (longitude BETWEEN -180 AND 180),
    device_id_enc    bytea,
    ip_address_enc   bytea,
    email_enc        bytea,
    personal_key_id  text,
    CONSTRAINT transactions_event_day_is_utc_day CHECK (event_day = (event_time AT TIME ZONE 'UTC')::date),
    CONSTRAINT transactions_location_pair CHECK ((latitude IS NULL) = (longitude IS NULL)),
    CONSTRAINT transactions_personal_key CHECK (personal_key_id IS NOT NULL
        OR (device_id_enc IS NULL AND ip_address_enc IS NULL AND email_enc IS NULL)),
    PRIMARY KEY (transaction_id, event_day)
) PARTITION BY RANGE (event_day);

CREATE INDEX transactions_card_time_idx     ON transactions (card_token, event_time);
CREATE INDEX transactions_customer_time_idx ON transactions (customer_id, event_time) WHERE customer_id IS NOT NULL;
CREATE INDEX transactions_merchant_time_idx ON transactions (merchant_id, event_time);
CREATE INDEX transactions_time_idx          ON transactions (event_time);

-- One row per scored transaction, holding everything needed to reproduce the decision: the inputs as the
-- scorer saw them, the feature vector it computed, the model and rule versions, and what came out.
CREATE TABLE decisions (
    transaction_id   text             NOT NULL CHECK (transaction_id <> ''),
    event_time       timestamptz      NOT NULL,
    event_day        date             NOT NULL,
    card_token       text             NOT NULL CHECK (card_token <> '' AND card_token !~ '^[0-9]{12,19}$'),
    card_bin         text             CHECK (card_bin ~ '^[0-9]{6,8}$'),
    card_last4       text             CHECK (card_last4 ~ '^[0-9]{4}$'),
    customer_id      text,
    merchant_id      text             NOT NULL CHECK (merchant_id <> ''),
    mcc              integer          CHECK (mcc BETWEEN 0 AND 9999),
    merchant_country text             CHECK (merchant_country ~ '^[A-Z]{2}$'),
    channel          text             NOT NULL DEFAULT 'unspecified' CHECK (channel IN
                         ('unspecified', 'card_present', 'ecommerce', 'moto', 'in_app', 'recurring', 'atm')),
    entry_mode       text             NOT NULL DEFAULT 'unspecified' CHECK (entry_mode IN
                         ('unspecified', 'chip', 'contactless', 'magstripe', 'manual', 'card_on_file', 'wallet')),
    amount_minor     bigint           NOT NULL CHECK (amount_minor >= 0),
    currency         text             NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    latitude         double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude        double precision CHECK (longitude BETWEEN -180 AND 180),
    device_id_enc    bytea,
    ip_address_enc   bytea,
    email_enc        bytea,
    personal_key_id  text,
    features         real[]           NOT NULL CHECK (array_ndims(features) = 1),
    model_version    text             NOT NULL CHECK (model_version <> ''),
    anomaly_score    double precision,                       -- the optional anomaly model's, when it ran
    rule_versions    jsonb            NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rule_versions) = 'object'),
    rule_hits        jsonb            NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(rule_hits) = 'array'),
    -- NaN when the model gave no number (the decision is then REVIEW); PostgreSQL sorts NaN above all numbers
    score            double precision NOT NULL CHECK (score = 'NaN' OR score BETWEEN 0 AND 1),
    action           text             NOT NULL CHECK (action IN ('allow', 'challenge', 'review', 'block')),
    reasons          jsonb            NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(reasons) = 'array'),
    server_time_us   double precision NOT NULL CHECK (server_time_us >= 0),
    decided_at       timestamptz      NOT NULL,              -- the scorer's clock when it decided
    recorded_at      timestamptz      NOT NULL DEFAULT now(), -- when the background writer stored it
    CONSTRAINT decisions_event_day_is_utc_day CHECK (event_day = (event_time AT TIME ZONE 'UTC')::date),
    CONSTRAINT decisions_location_pair CHECK ((latitude IS NULL) = (longitude IS NULL)),
    CONSTRAINT decisions_personal_key CHECK (personal_key_id IS NOT NULL
        OR (device_id_enc IS NULL AND ip_address_enc IS NULL AND email_enc IS NULL)),
    PRIMARY KEY (transaction_id, event_day)
) PARTITION BY RANGE (event_day);

-- The API's look-ups (a card's, a customer's, a merchant's decisions, newest first) and time windows.
CREATE INDEX decisions_card_time_idx     ON decisions (card_token, event_time);
CREATE INDEX decisions_customer_time_idx ON decisions (customer_id, event_time) WHERE customer_id IS NOT NULL;
CREATE INDEX decisions_merchant_time_idx ON decisions (merchant_id, event_time);
CREATE INDEX decisions_time_idx          ON decisions (event_time);
-- The review queue and the blocked/challenged lists. 'allow' is nearly every row and is never listed by
-- action, so it stays out of this index, which stays small.
CREATE INDEX decisions_action_time_idx   ON decisions (action, event_time) WHERE action <> 'allow';

-- Outcomes, as they become known. An analyst verdict is a label with source 'analyst' and the analyst in actor.
-- reported_at is when the source says the outcome happened; known_at is when fraudguard learned it, and
-- label-derived features count a label only from that moment (no peeking into the future when training).
CREATE TABLE labels (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id text        NOT NULL CHECK (transaction_id <> ''),
    label          text        NOT NULL CHECK (label IN ('fraud', 'legitimate', 'chargeback')),
    source         text        NOT NULL CHECK (source ~ '^[a-z][a-z0-9_]*$'),  -- processor, stripe, analyst, import…
    actor          text,
    reported_at    timestamptz NOT NULL,
    known_at       timestamptz NOT NULL DEFAULT now(),
    note           text        NOT NULL DEFAULT '',
    CONSTRAINT labels_analyst_named CHECK (source <> 'analyst' OR actor IS NOT NULL),
    -- the same report delivered twice (webhook retries) is one label
    CONSTRAINT labels_once UNIQUE (transaction_id, source, label, reported_at)
);
CREATE INDEX labels_known_at_idx ON labels (known_at);

-- Bundles stay files (DATA_DIR/models); the database records what was made and what was promoted when.
CREATE TABLE model_bundles (
    version                   text        PRIMARY KEY CHECK (version <> ''),
    created_at                timestamptz NOT NULL,
    registered_at             timestamptz NOT NULL DEFAULT now(),
    model_sha256              bytea       NOT NULL CHECK (octet_length(model_sha256) = 32),
    feature_schema            jsonb       NOT NULL,
    thresholds                jsonb       NOT NULL CHECK (jsonb_typeof(thresholds) = 'object'),
    metrics                   jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    training_data_fingerprint text,
    origin                    text        NOT NULL CHECK (origin ~ '^[a-z][a-z0-9_]*$'),  -- trained, federated, demo…
    location                  text        NOT NULL DEFAULT ''                             -- path or URL of the bundle
);

CREATE TABLE model_promotions (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version          text        NOT NULL REFERENCES model_bundles (version),
    previous_version text        REFERENCES model_bundles (version),
    promoted_at      timestamptz NOT NULL DEFAULT now(),
    actor            text        NOT NULL,
    note             text        NOT NULL DEFAULT ''
);
CREATE INDEX model_promotions_time_idx ON model_promotions (promoted_at);

-- API keys are random, shown once, stored as the SHA-256 of the secret; id is the public part used in logs.
CREATE TABLE api_keys (
    id         text        PRIMARY KEY CHECK (id <> ''),
    hash       bytea       NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    roles      text[]      NOT NULL CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['scorer', 'analyst', 'admin']),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    note       text        NOT NULL DEFAULT '',
    CONSTRAINT api_keys_expiry_after_creation CHECK (expires_at > created_at)
);

-- Every privileged action. Each row's hash covers its content and prev_hash (the previous row's hash), so a
-- removed or edited row breaks the chain; computing and verifying it is the audit module's job.
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL CHECK (action <> ''),
    subject   text        NOT NULL DEFAULT '',
    details   jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    prev_hash bytea       CHECK (octet_length(prev_hash) = 32),  -- NULL only for the first row
    hash      bytea       NOT NULL UNIQUE CHECK (octet_length(hash) = 32)
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- Retailers' trainers. A client is invited with a one-time enrollment token (only its hash is kept), then
-- enrolls with its X25519 (key agreement) and Ed25519 (signature) public keys.
CREATE TABLE federation_clients (
    id                    text        PRIMARY KEY CHECK (id <> ''),
    name                  text        NOT NULL DEFAULT '',
    x25519_public_key     bytea       CHECK (octet_length(x25519_public_key) = 32),
    ed25519_public_key    bytea       CHECK (octet_length(ed25519_public_key) = 32),
    enrollment_token_hash bytea       NOT NULL UNIQUE CHECK (octet_length(enrollment_token_hash) = 32),
    status                text        NOT NULL DEFAULT 'invited'
                              CHECK (status IN ('invited', 'active', 'suspended', 'revoked')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    enrolled_at           timestamptz,
    last_seen_at          timestamptz,
    CONSTRAINT federation_clients_enrolled_have_keys CHECK (status NOT IN ('active', 'suspended')
        OR (x25519_public_key IS NOT NULL AND ed25519_public_key IS NOT NULL AND enrolled_at IS NOT NULL))
);

-- One row per round. participants: [{client_id, samples, state, received_at}, ...]; metrics: what the round
-- published (sample counts, privacy budget spent, ...). Updates after update_deadline are late and refused.
CREATE TABLE federation_rounds (
    round_number         bigint      PRIMARY KEY CHECK (round_number >= 1),
    global_model_version text        NOT NULL,          -- the model offered at the start of the round
    result_model_version text,                          -- the model the round published, if any
    state                text        NOT NULL DEFAULT 'open'
                             CHECK (state IN ('open', 'aggregating', 'published', 'failed', 'cancelled')),
    quorum               integer     NOT NULL CHECK (quorum >= 1),
    opened_at            timestamptz NOT NULL DEFAULT now(),
    update_deadline      timestamptz NOT NULL,
    round_deadline       timestamptz NOT NULL,
    closed_at            timestamptz,
    participants         jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(participants) = 'array'),
    metrics              jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    CONSTRAINT federation_rounds_deadlines CHECK (update_deadline > opened_at AND round_deadline >= update_deadline),
    CONSTRAINT federation_rounds_published_model CHECK (state <> 'published' OR result_model_version IS NOT NULL)
);
