from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Codec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODEC_UNSPECIFIED: _ClassVar[Codec]
    CODEC_NONE: _ClassVar[Codec]
    CODEC_FP16: _ClassVar[Codec]
    CODEC_INT8: _ClassVar[Codec]

class RoundState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_STATE_UNSPECIFIED: _ClassVar[RoundState]
    ROUND_STATE_OPEN: _ClassVar[RoundState]
    ROUND_STATE_CLOSED: _ClassVar[RoundState]

class DPMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DP_MODE_UNSPECIFIED: _ClassVar[DPMode]
    DP_MODE_LOCAL: _ClassVar[DPMode]
    DP_MODE_CENTRAL: _ClassVar[DPMode]
    DP_MODE_SAMPLE: _ClassVar[DPMode]
CODEC_UNSPECIFIED: Codec
CODEC_NONE: Codec
CODEC_FP16: Codec
CODEC_INT8: Codec
ROUND_STATE_UNSPECIFIED: RoundState
ROUND_STATE_OPEN: RoundState
ROUND_STATE_CLOSED: RoundState
DP_MODE_UNSPECIFIED: DPMode
DP_MODE_LOCAL: DPMode
DP_MODE_CENTRAL: DPMode
DP_MODE_SAMPLE: DPMode

class DPParams(_message.Message):
    __slots__ = ("clip_norm", "noise_multiplier", "steps", "sample_rate", "mode")
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    clip_norm: float
    noise_multiplier: float
    steps: int
    sample_rate: float
    mode: DPMode
    def __init__(self, clip_norm: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., steps: _Optional[int] = ..., sample_rate: _Optional[float] = ..., mode: _Optional[_Union[DPMode, str]] = ...) -> None: ...

class UpdateMetadata(_message.Message):
    __slots__ = ("plant", "round_id", "base_version", "num_samples", "metrics", "train_seconds", "codec", "dp", "total_bytes", "sha256", "variant")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PLANT_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    plant: str
    round_id: str
    base_version: int
    num_samples: int
    metrics: _containers.ScalarMap[str, float]
    train_seconds: float
    codec: Codec
    dp: DPParams
    total_bytes: int
    sha256: str
    variant: str
    def __init__(self, plant: _Optional[str] = ..., round_id: _Optional[str] = ..., base_version: _Optional[int] = ..., num_samples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., train_seconds: _Optional[float] = ..., codec: _Optional[_Union[Codec, str]] = ..., dp: _Optional[_Union[DPParams, _Mapping]] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("round_id", "model", "base_version", "plants", "state", "max_update_bytes", "opened_at", "closed_at")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLANTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MAX_UPDATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    model: str
    base_version: int
    plants: _containers.RepeatedScalarFieldContainer[str]
    state: RoundState
    max_update_bytes: int
    opened_at: float
    closed_at: float
    def __init__(self, round_id: _Optional[str] = ..., model: _Optional[str] = ..., base_version: _Optional[int] = ..., plants: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[RoundState, str]] = ..., max_update_bytes: _Optional[int] = ..., opened_at: _Optional[float] = ..., closed_at: _Optional[float] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("model", "version", "digest", "size", "parent", "round_id", "metrics", "created_at", "promoted", "aggregation")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    digest: str
    size: int
    parent: int
    round_id: str
    metrics: _containers.ScalarMap[str, float]
    created_at: float
    promoted: bool
    aggregation: AggregationSummary
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., parent: _Optional[int] = ..., round_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., created_at: _Optional[float] = ..., promoted: _Optional[bool] = ..., aggregation: _Optional[_Union[AggregationSummary, _Mapping]] = ...) -> None: ...

class AggregationSummary(_message.Message):
    __slots__ = ("strategy", "seconds", "peak_bytes", "plants")
    class PlantsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PlantAggregationStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PlantAggregationStats, _Mapping]] = ...) -> None: ...
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
    PLANTS_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    seconds: float
    peak_bytes: int
    plants: _containers.MessageMap[str, PlantAggregationStats]
    def __init__(self, strategy: _Optional[str] = ..., seconds: _Optional[float] = ..., peak_bytes: _Optional[int] = ..., plants: _Optional[_Mapping[str, PlantAggregationStats]] = ...) -> None: ...

class PlantAggregationStats(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class UpdateRecord(_message.Message):
    __slots__ = ("meta", "digest", "received_at", "bytes_received", "upload_seconds")
    META_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    meta: UpdateMetadata
    digest: str
    received_at: float
    bytes_received: int
    upload_seconds: float
    def __init__(self, meta: _Optional[_Union[UpdateMetadata, _Mapping]] = ..., digest: _Optional[str] = ..., received_at: _Optional[float] = ..., bytes_received: _Optional[int] = ..., upload_seconds: _Optional[float] = ...) -> None: ...

class GetRoundRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class RoundAssignment(_message.Message):
    __slots__ = ("round_id", "model", "base_version", "state", "max_update_bytes", "assigned", "plant", "candidate_version")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MAX_UPDATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    PLANT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    model: str
    base_version: int
    state: RoundState
    max_update_bytes: int
    assigned: bool
    plant: str
    candidate_version: int
    def __init__(self, round_id: _Optional[str] = ..., model: _Optional[str] = ..., base_version: _Optional[int] = ..., state: _Optional[_Union[RoundState, str]] = ..., max_update_bytes: _Optional[int] = ..., assigned: _Optional[bool] = ..., plant: _Optional[str] = ..., candidate_version: _Optional[int] = ...) -> None: ...

class UploadStart(_message.Message):
    __slots__ = ("meta", "offset")
    META_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    meta: UpdateMetadata
    offset: int
    def __init__(self, meta: _Optional[_Union[UpdateMetadata, _Mapping]] = ..., offset: _Optional[int] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("start", "chunk")
    START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    start: UploadStart
    chunk: bytes
    def __init__(self, start: _Optional[_Union[UploadStart, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadReceipt(_message.Message):
    __slots__ = ("round_id", "plant", "digest", "size", "duplicate", "received_at", "bytes_received", "upload_seconds")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    PLANT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    plant: str
    digest: str
    size: int
    duplicate: bool
    received_at: float
    bytes_received: int
    upload_seconds: float
    def __init__(self, round_id: _Optional[str] = ..., plant: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., duplicate: _Optional[bool] = ..., received_at: _Optional[float] = ..., bytes_received: _Optional[int] = ..., upload_seconds: _Optional[float] = ...) -> None: ...

class UploadStatusRequest(_message.Message):
    __slots__ = ("round_id", "sha256")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    sha256: str
    def __init__(self, round_id: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadStatus(_message.Message):
    __slots__ = ("committed_offset", "committed", "committed_sha256", "max_chunk_bytes")
    COMMITTED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    committed_offset: int
    committed: bool
    committed_sha256: str
    max_chunk_bytes: int
    def __init__(self, committed_offset: _Optional[int] = ..., committed: _Optional[bool] = ..., committed_sha256: _Optional[str] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("model", "version", "offset", "if_sha256")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    IF_SHA256_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    offset: int
    if_sha256: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., offset: _Optional[int] = ..., if_sha256: _Optional[str] = ...) -> None: ...

class DownloadInfo(_message.Message):
    __slots__ = ("version", "sha256", "size", "start_offset")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    sha256: str
    size: int
    start_offset: int
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., start_offset: _Optional[int] = ...) -> None: ...

class DownloadResponse(_message.Message):
    __slots__ = ("info", "chunk")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    info: DownloadInfo
    chunk: bytes
    def __init__(self, info: _Optional[_Union[DownloadInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class CloseRoundRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class ListUpdatesRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class ListUpdatesResponse(_message.Message):
    __slots__ = ("round", "updates")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    round: Round
    updates: _containers.RepeatedCompositeFieldContainer[UpdateRecord]
    def __init__(self, round: _Optional[_Union[Round, _Mapping]] = ..., updates: _Optional[_Iterable[_Union[UpdateRecord, _Mapping]]] = ...) -> None: ...

class PublishStart(_message.Message):
    __slots__ = ("model", "parent", "round_id", "metrics", "total_bytes", "sha256", "promote")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    model: str
    parent: int
    round_id: str
    metrics: _containers.ScalarMap[str, float]
    total_bytes: int
    sha256: str
    promote: bool
    def __init__(self, model: _Optional[str] = ..., parent: _Optional[int] = ..., round_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., promote: _Optional[bool] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("start", "chunk")
    START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    start: PublishStart
    chunk: bytes
    def __init__(self, start: _Optional[_Union[PublishStart, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("round_id", "plant", "version", "num_samples", "metrics", "received_at")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    PLANT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    plant: str
    version: int
    num_samples: int
    metrics: _containers.ScalarMap[str, float]
    received_at: float
    def __init__(self, round_id: _Optional[str] = ..., plant: _Optional[str] = ..., version: _Optional[int] = ..., num_samples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., received_at: _Optional[float] = ...) -> None: ...

class EvaluationReceipt(_message.Message):
    __slots__ = ("evaluation", "duplicate")
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    evaluation: Evaluation
    duplicate: bool
    def __init__(self, evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ListEvaluationsRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class ListEvaluationsResponse(_message.Message):
    __slots__ = ("evaluations",)
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    def __init__(self, evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ...) -> None: ...

class DPRelease(_message.Message):
    __slots__ = ("round_id", "mode", "noise_multiplier", "sample_rate", "steps", "clip_norm")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    mode: DPMode
    noise_multiplier: float
    sample_rate: float
    steps: int
    clip_norm: float
    def __init__(self, round_id: _Optional[str] = ..., mode: _Optional[_Union[DPMode, str]] = ..., noise_multiplier: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ..., clip_norm: _Optional[float] = ...) -> None: ...

class PlantReleases(_message.Message):
    __slots__ = ("plant", "releases")
    PLANT_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    plant: str
    releases: _containers.RepeatedCompositeFieldContainer[DPRelease]
    def __init__(self, plant: _Optional[str] = ..., releases: _Optional[_Iterable[_Union[DPRelease, _Mapping]]] = ...) -> None: ...

class GetPrivacyLedgerRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class PrivacyLedger(_message.Message):
    __slots__ = ("model", "plants")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PLANTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    plants: _containers.RepeatedCompositeFieldContainer[PlantReleases]
    def __init__(self, model: _Optional[str] = ..., plants: _Optional[_Iterable[_Union[PlantReleases, _Mapping]]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Identity(_message.Message):
    __slots__ = ("plant", "admin")
    PLANT_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    plant: str
    admin: bool
    def __init__(self, plant: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...
