import datetime

from fraudguard.proto.fraud.v1 import transaction_pb2 as _transaction_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_ALLOW: _ClassVar[Action]
    ACTION_CHALLENGE: _ClassVar[Action]
    ACTION_REVIEW: _ClassVar[Action]
    ACTION_BLOCK: _ClassVar[Action]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_FRAUD: _ClassVar[Outcome]
    OUTCOME_LEGITIMATE: _ClassVar[Outcome]
    OUTCOME_CHARGEBACK: _ClassVar[Outcome]
ACTION_UNSPECIFIED: Action
ACTION_ALLOW: Action
ACTION_CHALLENGE: Action
ACTION_REVIEW: Action
ACTION_BLOCK: Action
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_FRAUD: Outcome
OUTCOME_LEGITIMATE: Outcome
OUTCOME_CHARGEBACK: Outcome

class Reason(_message.Message):
    __slots__ = ("feature", "value", "contribution", "text")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: float
    contribution: float
    text: str
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[float] = ..., contribution: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class RuleHit(_message.Message):
    __slots__ = ("rule_id", "action", "description")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    action: Action
    description: str
    def __init__(self, rule_id: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., description: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("transaction_id", "score", "action", "reasons", "rule_hits", "model_version", "rule_set_version", "server_time_us")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    RULE_HITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULE_SET_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_US_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    score: float
    action: Action
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    rule_hits: _containers.RepeatedCompositeFieldContainer[RuleHit]
    model_version: str
    rule_set_version: str
    server_time_us: float
    def __init__(self, transaction_id: _Optional[str] = ..., score: _Optional[float] = ..., action: _Optional[_Union[Action, str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., rule_hits: _Optional[_Iterable[_Union[RuleHit, _Mapping]]] = ..., model_version: _Optional[str] = ..., rule_set_version: _Optional[str] = ..., server_time_us: _Optional[float] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "field", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    field: str
    message: str
    def __init__(self, code: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ScoreResult(_message.Message):
    __slots__ = ("transaction_id", "decision", "error")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    decision: Decision
    error: ItemError
    def __init__(self, transaction_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: _transaction_pb2.Transaction
    def __init__(self, transaction: _Optional[_Union[_transaction_pb2.Transaction, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class ScoreStreamRequest(_message.Message):
    __slots__ = ("transactions",)
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[_transaction_pb2.Transaction]
    def __init__(self, transactions: _Optional[_Iterable[_Union[_transaction_pb2.Transaction, _Mapping]]] = ...) -> None: ...

class ScoreStreamResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ScoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ScoreResult, _Mapping]]] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("transactions",)
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[_transaction_pb2.Transaction]
    def __init__(self, transactions: _Optional[_Iterable[_Union[_transaction_pb2.Transaction, _Mapping]]] = ...) -> None: ...

class ScoreBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ScoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ScoreResult, _Mapping]]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ("index", "name", "dtype", "description")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    dtype: str
    description: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., dtype: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ActionThreshold(_message.Message):
    __slots__ = ("action", "min_score")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    action: Action
    min_score: float
    def __init__(self, action: _Optional[_Union[Action, str]] = ..., min_score: _Optional[float] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model_version", "features", "thresholds", "loaded_at", "created_at", "training_data_fingerprint", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    thresholds: _containers.RepeatedCompositeFieldContainer[ActionThreshold]
    loaded_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    training_data_fingerprint: str
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, model_version: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., thresholds: _Optional[_Iterable[_Union[ActionThreshold, _Mapping]]] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., training_data_fingerprint: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("transaction_id", "outcome", "reported_at", "merchant_id", "device_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    outcome: Outcome
    reported_at: _timestamp_pb2.Timestamp
    merchant_id: str
    device_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., merchant_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    def __init__(self, applied: _Optional[bool] = ...) -> None: ...
