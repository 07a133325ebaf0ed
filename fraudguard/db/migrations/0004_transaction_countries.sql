-- 0004_transaction_countries: the card's issuing country (from its BIN), the billing and the shipping country of
-- a transaction, as the contract now carries them (fraud.v1 Card.country, Transaction.billing_country and
-- shipping_country): ISO-3166-1 alpha-2 in upper case, NULL when not given. The payer's e-mail has had its column
-- since 0001 (email_enc, sealed like the other personal fields); only the writer starts filling it.
--
-- ALTER on the partitioned parents reaches every partition, present and future. The columns come without a
-- default, so adding them rewrites nothing; their CHECKs are added NOT VALID, so that no partition is scanned under
-- this migration's lock to prove what is plain (every existing row holds NULL there). New and updated rows are
-- checked all the same; `ALTER TABLE ... VALIDATE CONSTRAINT` may mark them valid later, at leisure.

ALTER TABLE transactions
    ADD COLUMN card_country     text,
    ADD COLUMN billing_country  text,
    ADD COLUMN shipping_country text,
    ADD CONSTRAINT transactions_card_country_check     CHECK (card_country ~ '^[A-Z]{2}$') NOT VALID,
    ADD CONSTRAINT transactions_billing_country_check  CHECK (billing_country ~ '^[A-Z]{2}$') NOT VALID,
    ADD CONSTRAINT transactions_shipping_country_check CHECK (shipping_country ~ '^[A-Z]{2}$') NOT VALID;

ALTER TABLE decisions
    ADD COLUMN card_country     text,
    ADD COLUMN billing_country  text,
    ADD COLUMN shipping_country text,
    ADD CONSTRAINT decisions_card_country_check     CHECK (card_country ~ '^[A-Z]{2}$') NOT VALID,
    ADD CONSTRAINT decisions_billing_country_check  CHECK (billing_country ~ '^[A-Z]{2}$') NOT VALID,
    ADD CONSTRAINT decisions_shipping_country_check CHECK (shipping_country ~ '^[A-Z]{2}$') NOT VALID;
