import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_CARD_PRESENT: _ClassVar[Channel]
    CHANNEL_ECOMMERCE: _ClassVar[Channel]
    CHANNEL_MOTO: _ClassVar[Channel]
    CHANNEL_IN_APP: _ClassVar[Channel]
    CHANNEL_RECURRING: _ClassVar[Channel]
    CHANNEL_ATM: _ClassVar[Channel]

class EntryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_MODE_UNSPECIFIED: _ClassVar[EntryMode]
    ENTRY_MODE_CHIP: _ClassVar[EntryMode]
    ENTRY_MODE_CONTACTLESS: _ClassVar[EntryMode]
    ENTRY_MODE_MAGSTRIPE: _ClassVar[EntryMode]
    ENTRY_MODE_MANUAL: _ClassVar[EntryMode]
    ENTRY_MODE_CARD_ON_FILE: _ClassVar[EntryMode]
    ENTRY_MODE_WALLET: _ClassVar[EntryMode]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_CARD_PRESENT: Channel
CHANNEL_ECOMMERCE: Channel
CHANNEL_MOTO: Channel
CHANNEL_IN_APP: Channel
CHANNEL_RECURRING: Channel
CHANNEL_ATM: Channel
ENTRY_MODE_UNSPECIFIED: EntryMode
ENTRY_MODE_CHIP: EntryMode
ENTRY_MODE_CONTACTLESS: EntryMode
ENTRY_MODE_MAGSTRIPE: EntryMode
ENTRY_MODE_MANUAL: EntryMode
ENTRY_MODE_CARD_ON_FILE: EntryMode
ENTRY_MODE_WALLET: EntryMode

class Card(_message.Message):
    __slots__ = ("token", "bin", "last4", "pan", "country")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    PAN_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    token: str
    bin: str
    last4: str
    pan: str
    country: str
    def __init__(self, token: _Optional[str] = ..., bin: _Optional[str] = ..., last4: _Optional[str] = ..., pan: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class GeoPoint(_message.Message):
    __slots__ = ("latitude", "longitude")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("transaction_id", "event_time", "amount_minor", "currency", "card", "customer_id", "merchant_id", "mcc", "merchant_country", "device_id", "ip_address", "location", "channel", "entry_mode", "billing_country", "shipping_country", "email")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MCC_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ENTRY_MODE_FIELD_NUMBER: _ClassVar[int]
    BILLING_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    event_time: _timestamp_pb2.Timestamp
    amount_minor: int
    currency: str
    card: Card
    customer_id: str
    merchant_id: str
    mcc: int
    merchant_country: str
    device_id: str
    ip_address: str
    location: GeoPoint
    channel: Channel
    entry_mode: EntryMode
    billing_country: str
    shipping_country: str
    email: str
    def __init__(self, transaction_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., card: _Optional[_Union[Card, _Mapping]] = ..., customer_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., mcc: _Optional[int] = ..., merchant_country: _Optional[str] = ..., device_id: _Optional[str] = ..., ip_address: _Optional[str] = ..., location: _Optional[_Union[GeoPoint, _Mapping]] = ..., channel: _Optional[_Union[Channel, str]] = ..., entry_mode: _Optional[_Union[EntryMode, str]] = ..., billing_country: _Optional[str] = ..., shipping_country: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...
