"""Parameters of the encoder and the engines: what a window's evidence is made of.

Place in the pipeline: read by ``encoder`` (its shape), ``engines.fingerprint``
(sub-window grids, search depth, offset-vote tolerances, the vector index)
and ``engines.cnnbin`` (the per-track models). A database stores the ones it
was built with (``fingerprint.json``, each track record) and its loader
compares them with the running code's, refusing a mismatch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class CnnParams:
    """Shape of one per-track binary CNN.

    kind: which per-track network (see ``models``):

        * ``"embedding"`` (default): a small CNN head over the sub-window
          embeddings of the shared encoder (``encoder``). Its
          first layer is a bank of 1x1 convolutions whose kernels start as
          the track's own embeddings, one every ``hop_frames``; a neighbour
          max-pool absorbs tempo drift, a fixed diagonal convolution sums
          the evidence of sub-windows that agree on one time offset, and a
          global max-pool and one logit say "is this window track X?". See
          ``training.models.build_track_head``.
        * ``"spectrogram"``: the seed's design, a 3x3 convolution stack
          trained from scratch on the log-frequency spectrogram
          (``training.models.build_track_cnn``).

    widths, pooling: the spectrogram CNN's channel widths per 3x3 block and
        its final pooling ("global": max+mean over time and frequency;
        "time": over time only, keeping the coarse log-frequency position of
        each pattern: each cell spans 8 semitones after three pools).
    hop_frames: step between the embedding head's prototypes (feature frames).
        It must equal the step between a query window's sub-windows, so that
        one step along the prototypes is one step along the query.
    tolerance: the embedding head's neighbour max-pool radius in prototypes:
        10 % of tempo change moves the last of ten sub-windows by 0.9 steps.
    negative_quantile: each prototype's bias is set so that only this share
        of negative sub-windows is more similar to it than zero: prototypes
        that resemble all music (a held chord, a drum loop, noise) start
        with a low voice.
    """

    kind: str = "embedding"
    widths: tuple[int, ...] = (8, 16, 24, 32)
    pooling: str = "time"
    hop_frames: int = 5
    tolerance: int = 1
    negative_quantile: float = 0.99


@dataclass(frozen=True)
class MatchParams:
    """Sub-window grids, search depth and voting tolerances (frames of 32 ms).

    enrol_hop_frames: step between enrolled sub-windows (8 = 0.256 s).
    query_hop_frames: step between a query window's sub-windows (5 = 0.16 s,
        ten sub-windows per 2.5 s window). 5 and 8 being coprime, some query
        sub-window always lies within half a frame of an enrolled one.
    top_k: neighbours searched per sub-window.
    offset_tolerance_frames: how far two hits' implied starts may differ at
        the same query time (enrolment hop plus encoder slack).
    max_time_scale: relative speed/tempo change tolerated (0.12 = ±12 %).
    min_threshold: the decision threshold never goes below this score,
        whatever the calibration says (a catalogue of a few tracks otherwise
        calibrates to ~0 and any single chance hit would match).
    target_fpr: false-positive rate per window of the whole catalogue at
        which enrolment calibrates the threshold on held-out negatives.
    fpr_confidence: confidence with which that threshold holds
        ``target_fpr`` (``decision.calibration.bounded_threshold``); 0 is
        the plain quantile, which a database enrolled before this setting
        existed reads as.
    density_weight: how much of a sub-window's local density (the mean of
        its ``density_k`` best similarities, over every track) is taken off
        each of its hits before the vote (``engines.fingerprint.match``).
        0 is the plain similarity. Databases enrolled before this setting
        existed read as 0, so their calibrated thresholds stay valid.
    density_k: neighbours whose similarities make that local density.
    """

    enrol_hop_frames: int = 8
    query_hop_frames: int = 5
    top_k: int = 20
    offset_tolerance_frames: float = 6.0
    max_time_scale: float = 0.12
    min_threshold: float = 0.1
    target_fpr: float = 0.005
    fpr_confidence: float = 0.9
    density_weight: float = 0.75
    density_k: int = 10

    def __post_init__(self):
        if not 0.0 <= self.density_weight < 1.0:
            raise ConfigError(f"density_weight must be in [0, 1), got {self.density_weight!r}")
        if not 0.0 <= self.fpr_confidence < 1.0:
            raise ConfigError(f"fpr_confidence must be in [0, 1), got {self.fpr_confidence!r}")
        if not 1 <= self.density_k <= self.top_k:
            raise ConfigError(f"density_k must be in [1, top_k={self.top_k}], got {self.density_k!r}")


@dataclass(frozen=True)
class IndexParams:
    """Which backend, and how it scales.

    backend: "auto" (faiss if installed, else numpy), "faiss", "numpy",
        "qdrant" or "milvus".
    flat_max_vectors: faiss keeps exact search up to this many vectors
        (~430 tracks of 2.5 minutes at one vector per 0.256 s), then switches
        to IVF-PQ; Milvus ("auto" index) keeps IVF_FLAT up to it, then
        switches to IVF_PQ (and back below a quarter of it).
    pq_bytes: bytes per vector in IVF-PQ (sub-quantisers of 8 bits); 16 for
        64-dim vectors means 4 dimensions per code byte. Milvus' ``m``.
    nlist: inverted lists of IVF-PQ (and Milvus' IVF_FLAT); 0 picks
        ~4 sqrt(n) (a power of two between 256 and 4096), the usual balance
        of list scans and centroids, capped so that training k-means stays
        around a minute on two cores (Milvus: at most 1024, as it trains one
        IVF per segment of 1024 rows or more).
    nprobe: lists visited per query: recall against speed.
    fastscan_min_vectors: faiss builds IVF-PQ for at least this many vectors
        as ``IndexIVFPQFastScan``: 2 x ``pq_bytes`` sub-quantisers of 4 bits
        (the same bytes per vector), scanned 32 codes at a time with SIMD
        table look-ups. Its lists scan ~8x faster once they hold thousands of
        codes (2 M vectors in 256 lists: 0.17 against 1.39 ms per query), but
        4-bit codes are coarser, and with short lists the gain is small (0.47 M
        vectors in 2,048 lists: 0.037 against 0.057 ms, recall@10 of the exact
        neighbour 0.83 against 0.98 on synthetic clusters), so smaller
        catalogues keep 8-bit IVF-PQ. 0 means always FastScan once IVF-PQ.
    qdrant_url: a Qdrant server ("http://host:6333"); None means embedded
        local mode in a folder of the database. An API key, if the server
        needs one, is read from the QDRANT_API_KEY environment variable,
        never stored.
    qdrant_collection: collection name; a new database gets its own unique
        name, so several databases can share one Qdrant cluster.
    milvus_uri: the Milvus server or cluster proxy ("http://host:19530",
        "https://..." for TLS); required with backend "milvus". A token, if
        the server needs one ("user:password" or an API key), is read from
        the MILVUS_TOKEN environment variable, never stored.
    milvus_collection: collection name (letters, digits, underscores); a new
        database gets its own unique one, like Qdrant's.
    milvus_index: "auto" (IVF_FLAT up to ``flat_max_vectors``, IVF_PQ
        beyond), or one of "IVF_FLAT", "IVF_PQ", "HNSW" at every size.
    hnsw_m: HNSW graph degree (links per vector; memory ~ 8 bytes x M each).
    hnsw_ef_construction: HNSW candidate list while building: build time
        against graph quality.
    hnsw_ef: HNSW candidate list per query (at least the searched k):
        recall against speed.
    milvus_timeout_s: seconds one Milvus call may take (connect, search,
        insert, ...) before it counts as failed; index building and
        loading get ten times as long.
    milvus_retries: tries per call on a transient failure (server down,
        restarting or too slow) before one clear error is raised.
    milvus_backoff_s: wait before the second try; doubled before each next.
    """

    backend: str = "auto"
    flat_max_vectors: int = 250_000
    pq_bytes: int = 16
    nlist: int = 0
    nprobe: int = 16
    fastscan_min_vectors: int = 4_000_000
    qdrant_url: str | None = None
    qdrant_collection: str = "audiocopy"
    milvus_uri: str | None = None
    milvus_collection: str = "audiocopy"
    milvus_index: str = "auto"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef: int = 64
    milvus_timeout_s: float = 10.0
    milvus_retries: int = 3
    milvus_backoff_s: float = 0.5


@dataclass(frozen=True)
class EncoderParams:
    """Shape of the shared encoder (``training.models.build_encoder``).

    frames: sub-window length in feature frames (30 x 32 ms hop ~ 1 s).
    bands: feature bands (must equal ``FeatureParams.n_bins``).
    widths, hidden_dim, embedding_dim: see ``training.models.build_encoder``.
    """

    frames: int = 30
    bands: int = 72
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    hidden_dim: int = 256
    embedding_dim: int = 64
