"""The spec language as pydantic models.

Every block forbids unknown keys. Fields that name another stage are plain
strings here (`init: sft`, `checkpoint: online@800`); `compiler.graph`
resolves them into DAG edges. Defaults are documented where they pick a side
of a question the field disagrees on (IPO normalisation, tie handling).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

# Every integer fits in int64: torch seeds, DuckDB BIGINT columns and numpy all stop there.
INT64_MAX = 2**63 - 1
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
NonNegInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
# A stage name is used in references (`sft@300`) and in swept keys (`sft.train.lr`).
STAGE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
StageName = Annotated[str, Field(pattern=STAGE_NAME_PATTERN)]
# what samples a policy: specc's own loop (bit-reproducible on the CPU), or a colocated vLLM engine
Engine = Literal["hf", "vllm"]


class Block(BaseModel):
    # inf and nan are never meant (1e400 reads as inf) and cannot be hashed as JSON
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSettings(Block):
    """Which network a stage trains. `tiny` models are built from config (no download)."""

    family: Literal["tiny", "hub"] = "tiny"
    size: Literal["XS", "S", "M", "L"] = "S"  # tiny sizes; see runtime.models.TINY_SIZES
    name: str | None = None  # hub model name or local path, for family=hub
    dtype: Literal["float32", "bfloat16"] = "float32"

    @model_validator(mode="after")
    def _hub_needs_name(self):
        if self.family == "hub" and not self.name:
            raise ValueError("family 'hub' needs `name`: a hub model name or a local path")
        return self


class TrainSettings(Block):
    steps: PositiveInt = 200
    batch_size: PositiveInt = 32
    lr: Annotated[float, Field(gt=0)] = 1e-4
    warmup: NonNegInt = 0  # linear warm-up steps
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    seed: NonNegInt = 0
    eval_every: PositiveInt = 25  # evaluate at step 0, every eval_every steps and at the end
    eval_at: list[NonNegInt] = []  # further steps to evaluate, e.g. dense early ones: [2, 5, 10]
    checkpoint_every: PositiveInt = 50  # resume points (overwritten)
    save_at: list[NonNegInt] = []  # steps kept as named checkpoints, e.g. for `online@800`
    threads: PositiveInt = 1  # torch threads; part of what makes a CPU run bit-reproducible
    micro_batch_size: PositiveInt | None = None  # rows per forward+backward, gradients summed to the batch's (None: all)
    grad_checkpointing: bool = False  # recompute each block's activations in the backward: less memory, ~1/3 more compute
    keep_optimizer_state: bool = False  # keep checkpoint/state.pt once done (else only the final weights stay)


class LossSettings(Block):
    """Preference losses on h = log-ratio margin of policy vs reference (paper Sec. 2, App. B)."""

    name: Literal["ipo", "dpo", "bo2", "slic"] = "ipo"
    beta: Annotated[float, Field(gt=0)] = 0.1
    # IPO: sum log-probs over response tokens (paper) or average them (TRL offline)
    normalize: Literal["sum", "mean"] = "sum"


class EvaluateSettings(Block):
    """The paper's evaluation protocol (Sec. 3, App. D)."""

    baseline: str | None = None  # policy stage to beat; None = the stage's own init
    judge: str | None = None  # golden judge stage; required for win rates
    pairs: str | None = None  # pair dataset (D_golden) for classifier accuracy and winner/loser log-probs
    kl_prompts: PositiveInt = 256  # one sample each, exact per-token KL to the reference
    win_prompts: PositiveInt = 512  # fixed held-out prompts, judged symmetrised
    classifier_pairs: PositiveInt = 256  # pairs of D_golden for policy-as-classifier accuracy
    seed: NonNegInt = 1234  # evaluation draws are independent of training draws
    engine: Engine = "hf"  # what samples the policy's responses (runtime.engines)


class SamplerSettings(Block):
    """Where an align stage's labelled pairs come from: exactly one of online / offline / replay."""

    online: str | None = None  # judge stage labelling the policy's own samples
    offline: str | None = None  # pair dataset stage (label or pairs)
    replay: str | None = None  # an online align stage whose recorded stream is replayed
    shuffle: Annotated[float, Field(ge=0, le=1)] = 0.0  # replay only: 0 = exact order, 1 = uniform
    label: Literal["argmax", "sample"] = "argmax"  # online: judge's preferred side, or sampled from its probability
    engine: Engine = "hf"  # online: what samples the policy (runtime.engines)
    # online with engine vllm: push the learner's weights to the engine every k steps; in
    # between it samples from weights up to k - 1 steps old (recorded as online/policy_lag)
    sync_every: PositiveInt = 1

    @model_validator(mode="after")
    def _exactly_one_source(self):
        given = [k for k in ("online", "offline", "replay") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of online / offline / replay, got {given or 'none'}")
        if self.shuffle and self.replay is None:
            raise ValueError("shuffle applies to replay only")
        if self.online is None and (self.engine != "hf" or self.sync_every != 1):
            raise ValueError("engine and sync_every apply to an online sampler only")
        if self.sync_every != 1 and self.engine == "hf":
            raise ValueError("sync_every needs engine vllm: the hf engine always samples the current weights")
        return self


class SyntheticTask(Block):
    """The embedded preference task; see docs/embedded-task.md."""

    variant: Literal["topic", "motif", "cover"] = "cover"  # runtime.tasks.synthetic documents each
    vocab: Annotated[int, Field(ge=8, le=4096)] = 32
    prompt_len: Annotated[int, Field(ge=2, le=256)] = 8
    response_len: Annotated[int, Field(ge=2, le=256)] = 16
    train_prompts: PositiveInt = 4096
    eval_prompts: PositiveInt = 512
    label_temperature: Annotated[float, Field(gt=0)] = 0.1  # D_initial labels ~ Bernoulli(sigmoid(dr/T))
    behaviour_temperature: Annotated[float, Field(gt=0)] = 1.0  # mediocre generator of D_initial
    seed: NonNegInt = 0
    # `cover` only: size of the hidden token set, penalty per extra copy of a set token,
    # and how peaked the behaviour policy's per-response unigrams get (0 = uniform)
    cover_set: Annotated[int, Field(ge=1, le=64)] = 8
    repeat_penalty: Annotated[float, Field(ge=0)] = 0.5
    behaviour_spread: Annotated[float, Field(ge=0)] = 2.0


class StageBase(Block):
    description: str | None = None
    sweep: "Sweep | None" = None


class DatasetStage(StageBase):
    kind: Literal["dataset"]
    source: Literal["synthetic", "files", "hub"] = "synthetic"
    task: SyntheticTask = SyntheticTask()
    format: Literal["anthropic_hh", "tldr", "chatbot_arena", "generic"] | None = None
    path: str | None = None
    hub_name: str | None = None
    subset: str | None = None
    split: str = "train"
    limit: PositiveInt | None = None
    tokenizer: str | None = None  # hub name or path; real data needs one
    max_prompt_tokens: PositiveInt = 512
    max_response_tokens: PositiveInt = 128

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "files" and not (self.path and self.format and self.tokenizer):
            raise ValueError("source 'files' needs `path`, `format` and `tokenizer`")
        if self.source == "hub" and not (self.hub_name and self.format and self.tokenizer):
            raise ValueError("source 'hub' needs `hub_name`, `format` and `tokenizer`")
        return self


class OracleStage(StageBase):
    """The hidden golden judge of a synthetic task (stands in for human raters)."""

    kind: Literal["oracle"]
    data: str


class LabelStage(StageBase):
    """Relabel a pair dataset with a judge: D_golden = label(D_initial, golden)."""

    kind: Literal["label"]
    data: str
    judge: str
    mode: Literal["argmax", "sample"] = "argmax"


class SftStage(StageBase):
    """Supervised fine-tuning on all responses (both sides) of pair datasets."""

    kind: Literal["sft"]
    data: str | Annotated[list[str], Field(min_length=1)]
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()


class PreferenceModelStage(StageBase):
    """A proxy (or golden) judge trained on labelled pairs (App. A)."""

    kind: Literal["preference_model"]
    data: str
    init: str | None = None  # a policy to start from, e.g. sft
    form: Literal["pairwise", "pointwise"] = "pairwise"
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()


class AlignStage(StageBase):
    """Policy optimisation from `init` with a sampler and a loss."""

    kind: Literal["align"]
    init: str
    sampler: SamplerSettings
    loss: LossSettings = LossSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    prompts: str | None = None  # dataset stage to draw prompts from; inferred when unique

    @model_validator(mode="after")
    def _syncs_at_resume_and_eval_points(self):
        """A resumed job restarts the engine with the checkpoint's weights, and an evaluation
        samples the current ones: both must fall on steps where the weights are pushed anyway."""
        k = self.sampler.sync_every
        if k == 1:
            return self
        for field in ("checkpoint_every", "eval_every"):
            if getattr(self.train, field) % k:
                raise ValueError(f"sampler.sync_every={k} must divide train.{field}={getattr(self.train, field)}")
        off = [s for s in self.train.eval_at if s % k]
        if off:
            raise ValueError(f"train.eval_at {off}: evaluations must fall on multiples of sampler.sync_every={k}")
        return self


class PairsStage(StageBase):
    """D_{a vs b}: sample one response from each of two policies per prompt, judge them (Sec. 6)."""

    kind: Literal["pairs"]
    a: str
    b: str
    judge: str
    prompts: str | None = None
    count: PositiveInt = 2048
    seed: NonNegInt = 0
    engine: Engine = "hf"  # what samples both policies' responses (runtime.engines)


Stage = Annotated[
    Union[DatasetStage, OracleStage, LabelStage, SftStage, PreferenceModelStage, AlignStage, PairsStage],
    Field(discriminator="kind"),
]
STAGE_MODELS = {m.model_fields["kind"].annotation.__args__[0]: m for m in
                (DatasetStage, OracleStage, LabelStage, SftStage, PreferenceModelStage, AlignStage, PairsStage)}


class Sweep(Block):
    """Products of zips: `grid` axes cross, each `zip` group pairs its lists element-wise."""

    grid: dict[str, list[Any]] = {}
    zip: list[dict[str, list[Any]]] = []
    seeds: list[NonNegInt] | None = None  # sets train.seed (or seed)
    where: list[str] = []  # keep a point only if every expression holds, e.g. "loss.beta < 1"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        """`sweep: {train.lr: [...]}` and aliases like `lr` are grid axes."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        grid = data.get("grid", {})
        grid = dict(grid) if isinstance(grid, dict) else grid
        if isinstance(data.get("zip"), dict):
            data["zip"] = [data["zip"]]
        for key in list(data):
            if key in cls.model_fields:
                continue
            if "." in key or key in SWEEP_ALIASES:
                if isinstance(grid, dict):
                    grid[key] = data.pop(key)
        if grid is not None:
            data["grid"] = grid
        return data


SWEEP_ALIASES = {
    "lr": "train.lr", "steps": "train.steps", "batch_size": "train.batch_size", "seed": "train.seed",
    "beta": "loss.beta", "loss": "loss.name", "size": "model.size", "shuffle": "sampler.shuffle",
}


class StageResources(Block):
    """One stage's SLURM resources where they differ from the executor's (e.g. a large golden
    judge); a field left out keeps the executor's value."""

    partition: str | None = None  # SLURM partition for this stage's jobs
    gpus: NonNegInt | None = None  # GPUs per job: one rank (SLURM task) per GPU, spread evenly over its nodes
    nodes: PositiveInt | None = None  # nodes per job (more than one: its ranks span them)
    ranks: PositiveInt | None = None  # CPU-only jobs: ranks (SLURM tasks, torch.distributed over gloo)
    cpus: PositiveInt | None = None  # CPUs per rank (at least the job's train.threads)
    mem_gb: PositiveInt | None = None  # memory per job
    gpu_mem_gb: PositiveInt | None = None  # memory of each GPU, for the memory planner
    time_min: PositiveInt | None = None  # time limit per attempt; a job that reaches it is requeued and resumes


# stages whose jobs run as several ranks when their resources ask for them (runtime.distributed);
# any other job runs on rank 0 alone
RANKED_KINDS = ("sft", "align", "preference_model")


class ExecutorSettings(Block):
    kind: Literal["debug", "local", "slurm"] = "local"
    max_parallel: PositiveInt = 1  # local: jobs at once; cores are split between them
    partition: str | None = None
    gpus: NonNegInt = 0
    nodes: PositiveInt = 1
    ranks: PositiveInt | None = None
    cpus: PositiveInt = 2
    mem_gb: PositiveInt = 8
    gpu_mem_gb: PositiveInt = 80  # memory of each GPU (H100: 80); `specc validate` checks each job's estimate against it
    time_min: PositiveInt = 60
    account: str | None = None
    qos: str | None = None
    array_parallelism: PositiveInt = 64
    stages: dict[str, StageResources] = {}  # slurm: per-stage overrides by stage name, e.g. {golden: {gpus: 4}}

    @model_validator(mode="after")
    def _ranks_fit(self):
        for stage in (None, *self.stages):
            (self if stage is None else self.for_stage(stage)).layout(stage)
        return self

    def layout(self, stage: str | None = None) -> tuple[int, int, int]:
        """(nodes, ranks per node, GPUs per node) of one job: a rank per GPU, or `ranks` of
        CPU-only ranks; several ranks run one job under torch.distributed (runtime.distributed)."""
        where = f"stages.{stage}: " if stage else ""
        if self.gpus and self.ranks and self.ranks != self.gpus:
            raise ValueError(f"{where}ranks {self.ranks} with gpus {self.gpus}: a job has one rank per GPU")
        ranks = self.gpus or self.ranks or 1
        if ranks % self.nodes:
            raise ValueError(f"{where}{ranks} ranks do not spread evenly over {self.nodes} nodes")
        return self.nodes, ranks // self.nodes, self.gpus // self.nodes

    def for_stage(self, stage: str) -> "ExecutorSettings":
        """These settings with the stage's own resources applied (slurm arrays are per stage)."""
        override = self.stages.get(stage)
        if override is None:
            return self
        return self.model_copy(update={k: v for k, v in override.model_dump().items() if v is not None})


class CustomFigure(Block):
    title: str
    sql: str
    mark: Literal["line", "point", "bar"] = "line"
    x: str
    y: str
    color: str | None = None


class ReportSettings(Block):
    figures: list[str] | None = None  # None = every built-in figure the data supports
    custom: dict[str, CustomFigure] = {}


def _partial(model: type[Block]) -> type[Block]:
    """`model` with every field optional, each still checked: a defaults block sets only some keys."""
    fields = {name: (Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation, None)
              for name, info in model.model_fields.items()}
    return create_model(f"Default{model.__name__}", __base__=Block, __doc__=model.__doc__, **fields)


DefaultModelSettings = _partial(ModelSettings)
DefaultTrainSettings = _partial(TrainSettings)
DefaultLossSettings = _partial(LossSettings)


class Defaults(Block):
    """Blocks merged under every stage that has them; a stage's own keys win.

    Checked here too, so a wrong default is reported even where every stage overrides it."""

    model: DefaultModelSettings = DefaultModelSettings()
    train: DefaultTrainSettings = DefaultTrainSettings()
    loss: DefaultLossSettings = DefaultLossSettings()


class Spec(Block):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    extends: str | list[str] | None = None  # base spec file(s), relative to this file; merged first
    workspace: str = "runs"  # job dirs, DuckDB file and reports; relative to the current directory
    defaults: Defaults = Defaults()
    evaluate: EvaluateSettings = EvaluateSettings()
    stages: Annotated[dict[StageName, Stage], Field(min_length=1)]
    executor: ExecutorSettings = ExecutorSettings()
    report: ReportSettings = ReportSettings()
    report_to: list[Literal["tensorboard", "wandb"]] = []  # also copy training metrics there; not part of job ids
    max_jobs: PositiveInt = 10_000
    profiles: dict[str, dict[str, Any]] = {}  # named overlays, selected with --profile


StageBase.model_rebuild()
for _model in STAGE_MODELS.values():
    _model.model_rebuild()
Spec.model_rebuild()
