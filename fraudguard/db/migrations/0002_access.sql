-- The audit log is written only by fraudguard.audit.append_audit, which numbers rows 1, 2, 3, ... itself (under
-- a transaction-level advisory lock) so that a deleted row leaves a visible gap. No default id, then: an INSERT
-- that bypasses append_audit fails instead of taking a number from the sequence.
ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_id_positive CHECK (id >= 1);
ALTER TABLE audit_log ADD CONSTRAINT audit_log_prev_hash_iff_not_first CHECK ((id = 1) = (prev_hash IS NULL));

-- Append-only, as a guard against mistakes (an UPDATE typed in the wrong window); the table's owner can still
-- disable it, which is why the hash chain, not this trigger, is what detects tampering.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are added by fraudguard.audit.append_audit and are never changed or deleted';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
