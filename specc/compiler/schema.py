"""The spec language as pydantic models, and the one source of its documentation.

Every field's meaning is its Field(description=...): `specc schema` prints it for editors, and
docs/reference.md is generated from it (scripts/gen_reference.py). Every block forbids unknown keys. Fields that name another stage are plain
strings here (`init: sft`, `checkpoint: online@800`); `compiler.graph`
resolves them into DAG edges. Defaults are documented where they pick a side
of a question the field disagrees on (IPO normalisation, tie handling).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from specc.contracts import EXECUTORS, SAMPLERS

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

    family: Literal["tiny", "hub"] = Field("tiny", description="`tiny`: GPT-2-style, built from config; `hub`: a "
                                                               "causal LM by hub name or local path")
    size: Literal["XS", "S", "M", "L"] = Field("S", description="tiny sizes; see runtime.models.TINY_SIZES")
    name: str | None = Field(None, description="hub model name or local path, for family=hub")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="parameter dtype")

    @model_validator(mode="after")
    def _hub_needs_name(self):
        if self.family == "hub" and not self.name:
            raise ValueError("family 'hub' needs `name`: a hub model name or a local path")
        return self


class TrainSettings(Block):
    steps: PositiveInt = Field(200, description="optimiser steps")
    batch_size: PositiveInt = Field(32, description="examples (pairs, or sequences for SFT) per step")
    lr: Annotated[float, Field(gt=0)] = Field(1e-4, description="peak learning rate (Adam)")
    warmup: NonNegInt = Field(0, description="linear warm-up steps")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="decoupled weight decay")
    grad_clip: Annotated[float, Field(gt=0)] | None = Field(1.0,
        description="maximum global gradient norm; null: no clipping")
    seed: NonNegInt = Field(0, description="seed of everything random in training (sampling, batches)")
    eval_every: PositiveInt = Field(25, description="evaluate at step 0, every eval_every steps and at the end")
    eval_at: list[NonNegInt] = Field([], description="further steps to evaluate, e.g. dense early ones: [2, 5, 10]")
    checkpoint_every: PositiveInt = Field(50, description="resume points (overwritten)")
    save_at: list[NonNegInt] = Field([], description="steps kept as named checkpoints, e.g. for `online@800`")
    threads: PositiveInt = Field(1, description="torch threads; part of what makes a CPU run bit-reproducible")
    micro_batch_size: PositiveInt | None = Field(None,
        description="rows per forward+backward, gradients summed to the batch's (None: all)")
    grad_checkpointing: bool = Field(False, description="recompute each block's activations in the backward: less "
                                                        "memory, ~1/3 more compute")
    keep_optimizer_state: bool = Field(False, description="keep checkpoint/state.pt once done (else only the final "
                                                          "weights stay)")


class LossSettings(Block):
    """Preference losses on h = log-ratio margin of policy vs reference (paper Sec. 2, App. B)."""

    name: Literal["ipo", "dpo", "bo2", "slic"] = Field("ipo",
        description="`ipo`, `dpo`, `slic` (contrastive, on h) or `bo2` (-log pi(y_w|x), SFT on winners)")
    beta: Annotated[float, Field(gt=0)] = Field(0.1, description="regularisation strength: IPO's target margin is "
                                                                 "1/(2 beta); DPO and SLiC scale h by beta; bo2 "
                                                                 "ignores it")
    normalize: Literal["sum", "mean"] = Field("sum", description="IPO: sum log-probs over response tokens (paper) or "
                                                                 "average them (TRL offline)")


class EvaluateSettings(Block):
    """The paper's evaluation protocol (Sec. 3, App. D)."""

    baseline: str | None = Field(None, description="policy stage to beat; None = the stage's own init")
    judge: str | None = Field(None, description="golden judge stage; required for win rates")
    pairs: str | None = Field(None, description="pair dataset (D_golden) for classifier accuracy and winner/loser "
                                                "log-probs")
    kl_prompts: PositiveInt = Field(256, description="one sample each, exact per-token KL to the reference")
    win_prompts: PositiveInt = Field(512, description="fixed held-out prompts, judged symmetrised")
    classifier_pairs: PositiveInt = Field(256, description="pairs of D_golden for policy-as-classifier accuracy")
    seed: NonNegInt = Field(1234, description="evaluation draws are independent of training draws")
    engine: Engine = Field("hf", description="what samples the policy's responses (runtime.engines)")


class SamplerSettings(Block):
    """Where an align stage's labelled pairs come from: exactly one of online / offline / replay."""

    online: str | None = Field(None, description="judge stage labelling the policy's own samples")
    offline: str | None = Field(None, description="pair dataset stage (label or pairs)")
    replay: str | None = Field(None, description="an online align stage whose recorded stream is replayed")
    shuffle: Annotated[float, Field(ge=0, le=1)] = Field(0.0, description="replay only: 0 = exact order, 1 = uniform")
    label: Literal["argmax", "sample"] = Field("argmax",
        description="online: judge's preferred side, or sampled from its probability")
    engine: Engine = Field("hf", description="online: what samples the policy (runtime.engines)")
    sync_every: PositiveInt = Field(1, description="online with engine vllm: push the learner's weights to the engine "
                                                   "every k steps; in between it samples from weights up to k - 1 "
                                                   "steps old (recorded as online/policy_lag)")

    @model_validator(mode="after")
    def _exactly_one_source(self):
        given = [k for k in SAMPLERS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {' / '.join(SAMPLERS)}, got {given or 'none'}")
        if self.shuffle and self.replay is None:
            raise ValueError("shuffle applies to replay only")
        if self.online is None and (self.engine != "hf" or self.sync_every != 1):
            raise ValueError("engine and sync_every apply to an online sampler only")
        if self.sync_every != 1 and self.engine == "hf":
            raise ValueError("sync_every needs engine vllm: the hf engine always samples the current weights")
        return self


class SyntheticTask(Block):
    """The embedded preference task; see docs/embedded-task.md."""

    variant: Literal["topic", "motif", "cover"] = Field("cover", description="runtime.tasks.synthetic documents each")
    vocab: Annotated[int, Field(ge=8, le=4096)] = Field(32, description="vocabulary size")
    prompt_len: Annotated[int, Field(ge=2, le=256)] = Field(8, description="prompt tokens")
    response_len: Annotated[int, Field(ge=2, le=256)] = Field(16, description="response tokens")
    train_prompts: PositiveInt = Field(4096, description="prompts (one pair each) in D_initial")
    eval_prompts: PositiveInt = Field(512, description="held-out prompts for evaluation")
    label_temperature: Annotated[float, Field(gt=0)] = Field(0.1,
        description="D_initial labels ~ Bernoulli(sigmoid(dr/T))")
    behaviour_temperature: Annotated[float, Field(gt=0)] = Field(1.0, description="mediocre generator of D_initial")
    seed: NonNegInt = Field(0, description="seed of the task: its hidden reward and D_initial")
    cover_set: Annotated[int, Field(ge=1, le=64)] = Field(8, description="`cover` only: size of the hidden token set")
    repeat_penalty: Annotated[float, Field(ge=0)] = Field(0.5,
        description="`cover` only: penalty per extra copy of a set token")
    behaviour_spread: Annotated[float, Field(ge=0)] = Field(2.0,
        description="`cover` only: how peaked the behaviour policy's per-response unigrams get (0 = uniform)")


class StageBase(Block):
    description: str | None = Field(None, description="free text; not part of the job's identity")
    sweep: "Sweep | None" = Field(None, description="one job per point; every stage downstream fans out with it")


class DatasetStage(StageBase):
    kind: Literal["dataset"] = Field(description="a dataset: D_initial, the prompts and pairs everything downstream "
                                                 "uses")
    source: Literal["synthetic", "files", "hub"] = Field("synthetic",
        description="`synthetic`: the embedded task (`task`); `files`: a local file (`path`); `hub`: a hub dataset "
                    "(`hub_name`)")
    task: SyntheticTask = Field(SyntheticTask(), description="the embedded task (source `synthetic`)")
    format: Literal["anthropic_hh", "tldr", "chatbot_arena", "generic"] | None = Field(None,
        description="record layout of real data: Anthropic HH, OpenAI TL;DR comparisons, Chatbot Arena, or "
                    "prompt/chosen/rejected columns (`generic`)")
    path: str | None = Field(None, description="a local .jsonl, .json, .jsonl.gz, .json.gz or .parquet file (source "
                                               "`files`)")
    hub_name: str | None = Field(None, description="a hub dataset, e.g. `Anthropic/hh-rlhf` (source `hub`)")
    subset: str | None = Field(None, description="the hub dataset's configuration, e.g. `comparisons`")
    split: str = Field("train", description="split to read; a fixed tenth of its prompts is held out for evaluation")
    limit: PositiveInt | None = Field(None, description="read at most this many usable records")
    tokenizer: str | None = Field(None, description="hub name or path; real data needs one")
    max_prompt_tokens: PositiveInt = Field(512, description="prompts are cut or padded to this many tokens")
    max_response_tokens: PositiveInt = Field(128, description="responses are cut or padded to this many tokens")

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "files" and not (self.path and self.format and self.tokenizer):
            raise ValueError("source 'files' needs `path`, `format` and `tokenizer`")
        if self.source == "hub" and not (self.hub_name and self.format and self.tokenizer):
            raise ValueError("source 'hub' needs `hub_name`, `format` and `tokenizer`")
        return self


class OracleStage(StageBase):
    """The hidden golden judge of a synthetic task (stands in for human raters)."""

    kind: Literal["oracle"] = Field(description="the synthetic task's hidden reward as a judge")
    data: str = Field(description="the synthetic dataset stage whose hidden reward it exposes")


class LabelStage(StageBase):
    """Relabel a pair dataset with a judge: D_golden = label(D_initial, golden)."""

    kind: Literal["label"] = Field(description="relabel pairs with a judge")
    data: str = Field(description="the pairs to relabel, e.g. D_initial")
    judge: str = Field(description="the judge that decides each pair")
    mode: Literal["argmax", "sample"] = Field("argmax",
        description="`argmax`: the judge's preferred side wins; `sample`: the winner is drawn from the judge's "
                    "probability")


class SftStage(StageBase):
    """Supervised fine-tuning on all responses (both sides) of pair datasets."""

    kind: Literal["sft"] = Field(description="supervised fine-tuning")
    data: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="pair dataset stage(s); both responses of every pair are targets")
    model: ModelSettings = Field(ModelSettings(), description="the network to train")
    train: TrainSettings = Field(TrainSettings(), description="optimisation settings")


class PreferenceModelStage(StageBase):
    """A proxy (or golden) judge trained on labelled pairs (App. A)."""

    kind: Literal["preference_model"] = Field(description="a learned judge")
    data: str = Field(description="labelled pairs: D_golden for a proxy, D_initial for a golden judge")
    init: str | None = Field(None, description="a policy to start from, e.g. sft")
    form: Literal["pairwise", "pointwise"] = Field("pairwise",
        description="`pairwise`: scores (x, y1, y2), order randomised in training and symmetrised at inference (App. "
                    "A); `pointwise`: a Bradley-Terry reward model")
    model: ModelSettings = Field(ModelSettings(), description="the network to train")
    train: TrainSettings = Field(TrainSettings(), description="optimisation settings")


class AlignStage(StageBase):
    """Policy optimisation from `init` with a sampler and a loss."""

    kind: Literal["align"] = Field(description="policy optimisation")
    init: str = Field(description="the policy to start from (`stage` or `stage@step`); frozen, it is also the "
                                  "reference of the loss and of the KL")
    sampler: SamplerSettings = Field(description="where labelled pairs come from")
    loss: LossSettings = Field(LossSettings(), description="the preference loss")
    train: TrainSettings = Field(TrainSettings(), description="optimisation settings")
    evaluate: EvaluateSettings = Field(EvaluateSettings(),
        description="this stage's evaluation; the top-level `evaluate` is merged under it")
    prompts: str | None = Field(None, description="dataset stage to draw prompts from; inferred when unique")

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

    kind: Literal["pairs"] = Field(description="D_{a vs b}: a new pair dataset sampled from two policies")
    a: str = Field(description="policy drawing the first response (`stage` or `stage@step`)")
    b: str = Field(description="policy drawing the second response (`stage` or `stage@step`)")
    judge: str = Field(description="the judge that labels each pair")
    prompts: str | None = Field(None, description="dataset stage to draw prompts from; inferred when unique")
    count: PositiveInt = Field(2048, description="pairs to make, one per train prompt (at most the number of train "
                                                 "prompts)")
    seed: NonNegInt = Field(0, description="seed of the prompt draw and of both samples")
    engine: Engine = Field("hf", description="what samples both policies' responses (runtime.engines)")


Stage = Annotated[
    Union[DatasetStage, OracleStage, LabelStage, SftStage, PreferenceModelStage, AlignStage, PairsStage],
    Field(discriminator="kind"),
]
STAGE_MODELS = {m.model_fields["kind"].annotation.__args__[0]: m for m in
                (DatasetStage, OracleStage, LabelStage, SftStage, PreferenceModelStage, AlignStage, PairsStage)}


class Sweep(Block):
    """Products of zips: `grid` axes cross, each `zip` group pairs its lists element-wise."""

    grid: dict[str, list[Any]] = Field({}, description="axes (dotted path or alias -> values); axes cross")
    zip: list[dict[str, list[Any]]] = Field([], description="groups of equal-length lists, paired element-wise; "
                                                            "groups cross with the grid")
    seeds: list[NonNegInt] | None = Field(None, description="sets train.seed (or seed)")
    where: list[str] = Field([], description="keep a point only if every expression holds, e.g. \"loss.beta < 1\"")

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

    partition: str | None = Field(None, description="SLURM partition for this stage's jobs")
    gpus: NonNegInt | None = Field(None, description="GPUs per job: one rank (SLURM task) per GPU, spread evenly over "
                                                     "its nodes")
    nodes: PositiveInt | None = Field(None, description="nodes per job (more than one: its ranks span them)")
    ranks: PositiveInt | None = Field(None, description="CPU-only jobs: ranks (SLURM tasks, torch.distributed over "
                                                        "gloo)")
    cpus: PositiveInt | None = Field(None, description="CPUs per rank (at least the job's train.threads)")
    mem_gb: PositiveInt | None = Field(None, description="memory per job")
    gpu_mem_gb: PositiveInt | None = Field(None, description="memory of each GPU, for the memory planner")
    time_min: PositiveInt | None = Field(None, description="time limit per attempt; a job that reaches it is requeued "
                                                           "and resumes")


# stages whose jobs run as several ranks when their resources ask for them (runtime.distributed);
# any other job runs on rank 0 alone
RANKED_KINDS = ("sft", "align", "preference_model")


class ExecutorSettings(Block):
    kind: Literal[EXECUTORS] = Field("local", description="`debug`: in-process; `local`: submitit subprocesses; "
                                                          "`slurm`: submitit job arrays on a SLURM cluster")
    max_parallel: PositiveInt = Field(1, description="local: jobs at once; cores are split between them")
    partition: str | None = Field(None, description="slurm: partition")
    gpus: NonNegInt = Field(0, description="slurm: GPUs per job; more than one runs the job as one rank (SLURM task) "
                                           "per GPU, sharded with FSDP2 (docs/multi-gpu.md)")
    nodes: PositiveInt = Field(1, description="slurm: nodes per job; its ranks spread evenly over them")
    ranks: PositiveInt | None = Field(None, description="slurm: ranks per job on CPU-only nodes (torch.distributed "
                                                        "over gloo); a GPU job has one rank per GPU")
    cpus: PositiveInt = Field(2, description="slurm: CPUs per job (per rank, where it has several)")
    mem_gb: PositiveInt = Field(8, description="slurm: memory per job, GB")
    gpu_mem_gb: PositiveInt = Field(80, description="memory of each GPU (H100: 80); `specc validate` checks each "
                                                    "job's estimate against it")
    time_min: PositiveInt = Field(60, description="slurm: time limit per attempt, minutes (a job that runs out "
                                                  "requeues and resumes from its checkpoint)")
    account: str | None = Field(None, description="slurm: account to charge")
    qos: str | None = Field(None, description="slurm: quality of service")
    array_parallelism: PositiveInt = Field(64, description="slurm: array tasks running at once")
    stages: dict[str, StageResources] = Field({}, description="slurm: per-stage overrides by stage name, e.g. "
                                                              "{golden: {gpus: 4}}")

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
    title: str = Field(description="figure title")
    sql: str = Field(description="read-only SQL over the store (see docs/store.md)")
    mark: Literal["line", "point", "bar"] = Field("line", description="chart type")
    x: str = Field(description="column on the x axis")
    y: str = Field(description="column on the y axis")
    color: str | None = Field(None, description="column that colours the marks")


class ReportSettings(Block):
    figures: list[str] | None = Field(None, description="None = every built-in figure the data supports")
    custom: dict[str, CustomFigure] = Field({}, description="extra figures: name -> a SQL query and a chart")


def _partial(model: type[Block]) -> type[Block]:
    """`model` with every field optional, each still checked: a defaults block sets only some keys."""
    fields = {name: (Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation,
                     Field(None, description=info.description))
              for name, info in model.model_fields.items()}
    return create_model(f"Default{model.__name__}", __base__=Block, __doc__=model.__doc__, **fields)


DefaultModelSettings = _partial(ModelSettings)
DefaultTrainSettings = _partial(TrainSettings)
DefaultLossSettings = _partial(LossSettings)


class Defaults(Block):
    """Blocks merged under every stage that has them; a stage's own keys win.

    Checked here too, so a wrong default is reported even where every stage overrides it."""

    model: DefaultModelSettings = Field(DefaultModelSettings(),
        description="merged under every sft and preference_model stage's `model`")
    train: DefaultTrainSettings = Field(DefaultTrainSettings(),
        description="merged under every sft, preference_model and align stage's `train`")
    loss: DefaultLossSettings = Field(DefaultLossSettings(), description="merged under every align stage's `loss`")


class Spec(Block):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the spec's report (`reports/<name>.html`) and "
                                                                "its rows in the store (`spec_name`)")
    description: str | None = Field(None, description="free text")
    extends: str | list[str] | None = Field(None, description="base spec file(s), relative to this file; merged first")
    workspace: str = Field("runs", description="job dirs, DuckDB file and reports; relative to the current directory")
    defaults: Defaults = Field(Defaults(), description="model / train / loss keys merged under every stage that has "
                                                       "the block")
    evaluate: EvaluateSettings = Field(EvaluateSettings(),
        description="the evaluation protocol, merged under every align stage's own `evaluate`")
    stages: Annotated[dict[StageName, Stage], Field(min_length=1)] = Field(
        description="the named stages; references between them make the DAG")
    executor: ExecutorSettings = Field(ExecutorSettings(), description="where and how jobs run")
    report: ReportSettings = Field(ReportSettings(), description="what the HTML report draws")
    report_to: list[Literal["tensorboard", "wandb"]] = Field([],
        description="also copy training metrics there; not part of job ids")
    max_jobs: PositiveInt = Field(10_000, description="compiling past this many jobs is an error (a guard against "
                                                      "runaway sweeps); `--max-jobs` raises it")
    profiles: dict[str, dict[str, Any]] = Field({}, description="named overlays, selected with --profile")


StageBase.model_rebuild()
for _model in STAGE_MODELS.values():
    _model.model_rebuild()
Spec.model_rebuild()
