"""Clerical review actions of the service (the data officer's): the review queue, one pair
with its match-weight waterfall, labelling a pair, why a record is in its entity, and the
accuracy estimate from labels.

All are the policy action `linkage.review` (data officer only; default deny). Everything is
on encodings: a pair is two records named by (source, ref), never an identifier. Labelling
records a `linkage.review_label` event (pair, label, run, purpose; the labeller is the
event's actor) before the label is appended to HOME/review/labels.jsonl, keyed by the
event's id, so `recovery.recover` can finish a label a crash left recorded but not stored.
The heavy lifting is `linkage.review` and `linkage.score.explain_pair`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joinedup.errors import InvalidInput, NotFound
from joinedup.operations.linkage import check_run_name
from joinedup.operations.protocol import Action, Caller
from joinedup.service_context import HomeContext, ServiceContext
from linkage import review as lr
from linkage.collation.resolve import Resolution

if TYPE_CHECKING:
    from joinedup.collate import RunIndex

ACTION = "linkage.review"
PURPOSE = "linkage_operations"
LABEL_EVENT = "linkage.review_label"
PAIR_ID_LENGTH = 17  # "P" + 16 hex digits (linkage.review.pair_id)


@dataclass(frozen=True)
class QueueRequest:
    limit: int = 20


@dataclass(frozen=True)
class PairRequest:
    pair_id: str
    run: str | None = None  # a run under HOME/runs; None: the current one


@dataclass(frozen=True)
class RecordsPairRequest:
    """Any two records of a run, linked or not: "why did these two (not) link?"."""
    left: tuple[str, str]  # (source, ref)
    right: tuple[str, str]
    run: str | None = None


@dataclass(frozen=True)
class LabelPair:
    pair_id: str  # "" when `left` and `right` name the pair
    label: str
    purpose: str = "queue"
    # Or the pair as two records of the current run, so that a pair the run never compared
    # (a missed link) can be confirmed; its id is then computed.
    left: tuple[str, str] | None = None
    right: tuple[str, str] | None = None


@dataclass(frozen=True)
class WhyRequest:
    source: str
    ref: str
    run: str | None = None  # a run under HOME/runs; None: the current one


def review_dir(ctx: HomeContext | ServiceContext) -> Path:
    return ctx.home.root / "review"


def current_run(ctx: HomeContext | ServiceContext) -> Path:
    """The current link run's directory (NotFound when there is none)."""
    from linkage.runs import RunsError, current_run_name, resolve_run

    try:
        name = current_run_name(ctx.home.runs_dir)
        if name is None:
            raise NotFound("no link run yet (run `joinedup link`)")
        return resolve_run(ctx.home.runs_dir, name)
    except RunsError as exc:
        raise NotFound(str(exc)) from exc


def chosen_run(ctx: HomeContext | ServiceContext, name: str | None) -> Path:
    """The run a request names (a finished run under HOME/runs), else the current one."""
    from linkage.runs import RunsError, resolve_run

    if name is None:
        return current_run(ctx)
    try:
        return resolve_run(ctx.home.runs_dir, name)
    except RunsError as exc:
        raise NotFound(f"no finished link run named {name}") from exc


def _check_pair_id(pair_id: str) -> None:
    body = pair_id[1:]
    if (len(pair_id) != PAIR_ID_LENGTH or not pair_id.startswith("P")
            or any(c not in "0123456789abcdef" for c in body)):
        raise InvalidInput("pair: not a pair id (P followed by 16 hex digits)",
                           [("pair", "not a pair id")])


def _find(run: Path, pair_id: str) -> dict[str, Any]:
    try:
        return lr.find_pair(run, review_dir_of_run(run), pair_id)
    except lr.ReviewError as exc:
        raise NotFound(f"no pair {pair_id} in the current run or the review") from exc


class RecordNotInRun(NotFound):
    """A record a request names is not in the run; `side` says which ("left" or "right")."""

    def __init__(self, message: str, side: str) -> None:
        super().__init__(message)
        self.side = side


def _records_pair(run: Path, left: tuple[str, str], right: tuple[str, str]) -> dict[str, Any]:
    try:
        return lr.pair_of_records(run, left, right)  # checks each record once
    except lr.RecordNotInRun as exc:
        raise RecordNotInRun(str(exc), exc.side) from exc


def _check_records(act: Action, left: Any, right: Any) -> None:
    problems = [(side, "a record is (source, ref)") for side, rec in (("left", left), ("right", right))
                if not (isinstance(rec, tuple | list) and len(rec) == 2 and all(isinstance(x, str) and x for x in rec))]
    if not problems and tuple(left) == tuple(right):
        problems = [("right", "the same record twice: a pair is two different records")]
    if problems:
        raise InvalidInput("; ".join(f"{f}: {r}" for f, r in problems), problems)
    # Refs are keyed hashes (ids); the sources are names a person typed.
    act.check_text({"left_source": left[0], "right_source": right[0]})


def review_dir_of_run(run: Path) -> Path:
    """HOME/review for a run under HOME/runs (find_pair also looks at requests and labels)."""
    return run.parent.parent / "review"


# -- reading -----------------------------------------------------------------------------
def review_queue(ctx: HomeContext | ServiceContext, caller: Caller,
                 request: QueueRequest = QueueRequest()) -> dict[str, Any]:
    """The unlabelled pairs most worth a decision (requests first, then by impact), the
    number labelled so far, and the accuracy estimate from the sampled labels."""
    if not 1 <= request.limit <= 500:
        raise InvalidInput("limit: between 1 and 500", [("limit", "between 1 and 500")])
    with Action(ctx, caller, ACTION, purpose=PURPOSE) as act:
        act.decide({})
        run = current_run(ctx)
        items = lr.review_queue(run, review_dir(ctx), request.limit)
        done = lr.labels(review_dir(ctx))
        return {"run": run.name, "items": items, "labelled": len(done),
                "labels_by_kind": _count(done.values(), "label"),
                "accuracy": lr.accuracy_estimate(run, review_dir(ctx)),
                "threshold": lr._threshold(run)}


def _count(docs, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in docs:
        out[doc[key]] = out.get(doc[key], 0) + 1
    return out


def accuracy(ctx: HomeContext | ServiceContext, caller: Caller) -> dict[str, Any]:
    """Precision and recall of the current run from the sampled labels (95% Wilson)."""
    with Action(ctx, caller, ACTION, purpose=PURPOSE) as act:
        act.decide({})
        run = current_run(ctx)
        return lr.accuracy_estimate(run, review_dir(ctx))


def show_pair(ctx: HomeContext | ServiceContext, caller: Caller,
              request: PairRequest | RecordsPairRequest) -> dict[str, Any]:
    """One pair, by id or as any two records of the run: its waterfall (each comparison's
    level and weight), match probability, the blocking rules that brought the two together
    (none: the run never compared them), the two records' entities and sizes, its current
    label, and what each label would change."""
    from linkage.score import ScoringError, explain_pair

    with Action(ctx, caller, ACTION, purpose=PURPOSE) as act:
        # invalid: recorded as request.invalid on exit
        if isinstance(request, RecordsPairRequest):
            _check_records(act, request.left, request.right)
        else:
            _check_pair_id(request.pair_id)
        if request.run is not None:
            check_run_name(request.run)
        act.decide({})  # before looking anything up
        run = chosen_run(ctx, request.run)
        if isinstance(request, RecordsPairRequest):
            pair = _records_pair(run, tuple(request.left), tuple(request.right))
        else:
            pair = _find(run, request.pair_id)
        pid = pair["pair_id"]
        try:
            explained = explain_pair(run, tuple(pair["left"]), tuple(pair["right"]))
        except ScoringError as exc:
            raise NotFound(f"pair {pid} cannot be scored in this run") from exc
        sizes = _entity_sizes(run, [explained["left"]["entity_id"],
                                    explained["right"]["entity_id"]])
        threshold = lr._threshold(run)
        label = lr.labels(review_dir(ctx)).get(pid)
        return {"run": run.name, "pair_id": pid, "left": explained["left"],
                "right": explained["right"], "match_weight": explained["match_weight"],
                "match_probability": explained["match_probability"],
                "run_match_probability": pair.get("match_probability"),
                "blocked_by": lr.blocking_rules_of_pair(run, tuple(pair["left"]), tuple(pair["right"])),
                "threshold": threshold, "waterfall": explained["waterfall"],
                "label": label, "entity_sizes": sizes,
                "effects": label_effects(explained, sizes, threshold)}


def _entity_sizes(run: Path, entity_ids: list[Any]) -> dict[str, int]:
    import duckdb

    path = str(run / "entities.parquet").replace("'", "''")
    con = duckdb.connect()
    rows = con.execute(f"SELECT entity_id, count(*) FROM read_parquet('{path}') "
                       "WHERE entity_id IN (SELECT unnest(?)) GROUP BY ALL",
                       [list({str(e) for e in entity_ids})]).fetchall()
    return {str(e): int(n) for e, n in rows}


def label_effects(explained: dict[str, Any], sizes: dict[str, int],
                  threshold: float) -> dict[str, str]:
    """What each label would change in the next link run (labels are constraints there)."""
    el, er = str(explained["left"]["entity_id"]), str(explained["right"]["entity_id"])
    together = el == er
    p = explained["match_probability"]
    side = "above" if p >= threshold else "below"
    if together:
        n = sizes.get(el, 2)
        match = (f"Keeps the two records in one entity ({n} records): a must-link, whatever "
                 "the score.")
        non_match = (f"Splits them: the two records may never be in one entity again, so "
                     f"the entity of {n} records is divided.")
    else:
        a, b = sizes.get(el, 1), sizes.get(er, 1)
        match = (f"Joins them: the entities of {a} and {b} records become one of {a + b} "
                 "records (a must-link).")
        non_match = "Keeps them apart (a cannot-link), as they are now."
    unsure = ("Changes no entity; the pair leaves the queue and is not counted in the "
              "accuracy estimate.")
    note = (f"The score is {side} the cluster threshold ({threshold:g}); decided labels also "
            "choose the threshold once there are enough of them.")
    return {"match": match, "non-match": non_match, "unsure": unsure, "threshold": note}


def why_in_entity(ctx: HomeContext | ServiceContext, caller: Caller,
                  request: WhyRequest) -> dict[str, Any]:
    """The links that hold a record in its entity (strongest first)."""
    with Action(ctx, caller, ACTION, purpose=PURPOSE) as act:
        act.check_text({"source": request.source})
        if request.run is not None:
            check_run_name(request.run)
        act.decide({})
        run = chosen_run(ctx, request.run)
        try:
            return lr.why_in_entity(run, request.source, request.ref)
        except lr.ReviewError as exc:
            raise NotFound(f"no such record in run {run.name}") from exc


# -- requests from the service ---------------------------------------------------------
REVIEW_QUEUED = " It has been sent to the data officers' review queue."


def review_request_for(index: RunIndex, resolution: Resolution) -> dict[str, Any] | None:
    """The review request a "needs review" resolution between two linked people makes: a
    record of each of the two entities (the first by source and ref), for the ledger event
    that records the outcome. None when the doubt is about the identifiers given, not about
    two linked people."""
    entities = resolution.review_entities
    if len(entities) != 2:
        return None
    records = [sorted(index.refs_of(e)) for e in entities]
    if not all(records):
        return None
    left, right = records[0][0], records[1][0]
    return {"pair_id": lr.pair_id(left, right), **_records_fields(left, right), "reason": resolution.reason}


def _records_fields(left: Any, right: Any) -> dict[str, str]:
    """Two records as ledger-event fields (refs under `*_ref` keys: ids, not text)."""
    return {"left_source": left[0], "left_ref": left[1], "right_source": right[0], "right_ref": right[1]}


def _records_of(doc: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    return (doc["left_source"], doc["left_ref"]), (doc["right_source"], doc["right_ref"])


def apply_review_request(ctx: HomeContext | ServiceContext, event: dict[str, Any]) -> dict[str, Any] | None:
    """Store the review request an event recorded, once (keyed by the event id)."""
    request = event["review_request"]
    by = (event.get("actor") or {}).get("id") or "service"
    left, right = _records_of(request)
    return lr.add_request(review_dir(ctx), left, right, request["reason"], by, event_id=event["event_id"])


# -- labelling ---------------------------------------------------------------------------
def label_pair(ctx: HomeContext | ServiceContext, caller: Caller,
               request: LabelPair) -> dict[str, Any]:
    """Decide, record `linkage.review_label`, then store the label (applies from the next
    link run). Returns the stored label."""
    problems = []
    if request.label not in lr.LABELS:
        problems.append(("label", f"choose one of {', '.join(lr.LABELS)}"))
    if request.purpose not in lr.PURPOSES:
        problems.append(("purpose", f"one of {', '.join(lr.PURPOSES)}"))
    if problems:
        with Action(ctx, caller, ACTION, purpose=PURPOSE):
            raise InvalidInput("; ".join(f"{f}: {r}" for f, r in problems), problems)
    with Action(ctx, caller, ACTION, purpose=PURPOSE) as act:
        by_records = request.left is not None or request.right is not None
        if by_records:
            _check_records(act, request.left, request.right)
        else:
            _check_pair_id(request.pair_id)
        act.decide({})
        run = current_run(ctx)
        if by_records:
            pair = _records_pair(run, tuple(request.left), tuple(request.right))
            if request.pair_id and request.pair_id != pair["pair_id"]:
                raise InvalidInput("pair: the id is not these two records' pair",
                                   [("pair", "not these two records' pair")])
        else:
            pair = _find(run, request.pair_id)
        event = {"type": LABEL_EVENT, "pair_id": pair["pair_id"], "label": request.label,
                 "purpose": request.purpose, "run": run.name,
                 "match_probability": pair.get("match_probability")}
        if by_records:
            # A pair the run may not hold: recovery finds its records here.
            event.update(_records_fields(pair["left"], pair["right"]))
        event_id = act.record(event)
        return apply_label(ctx, {**event, "event_id": event_id, "actor": caller.subject()}, pair)


def apply_label(ctx: HomeContext | ServiceContext, event: dict[str, Any],
                pair: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Store the label an event recorded, once (keyed by the event id). Returns the stored
    label, or None when it was already stored or its run is gone."""
    folder = review_dir(ctx)
    stored = lr._read(folder / "labels.jsonl")
    if any(doc.get("event_id") == event["event_id"] for doc in stored):
        return None
    if pair is None:
        run = ctx.home.runs_dir / str(event.get("run"))
        if not (run / "links.parquet").exists():
            return None
        try:
            if event.get("left_ref"):
                pair = lr.pair_of_records(run, *_records_of(event))
            else:
                pair = lr.find_pair(run, folder, event["pair_id"])
        except lr.ReviewError:
            return None
    by = (event.get("actor") or {}).get("id") or "data-officer"
    return lr.add_label(folder, tuple(pair["left"]), tuple(pair["right"]), event["label"], by,
                        event.get("purpose") or "queue", event.get("run"),
                        event.get("match_probability"), event_id=event["event_id"])


def next_pair(ctx: HomeContext | ServiceContext, caller: Caller) -> str | None:
    """The id of the first pair in the queue, or None when it is empty."""
    got = review_queue(ctx, caller, QueueRequest(limit=1))["items"]
    return got[0]["pair_id"] if got else None


@dataclass(frozen=True)
class SampleRequest:
    stratum: str = "links"  # "links": at or above the threshold; "band": below it


def sample(ctx: HomeContext | ServiceContext, caller: Caller,
           request: SampleRequest) -> dict[str, Any] | None:
    """An unlabelled pair drawn at random for the accuracy estimate (its label's purpose is
    `sample-<stratum>`), or None when every pair of the stratum is labelled."""
    if request.stratum not in ("links", "band"):
        with Action(ctx, caller, ACTION, purpose=PURPOSE):
            raise InvalidInput("stratum: links or band", [("stratum", "links or band")])
    with Action(ctx, caller, ACTION, purpose=PURPOSE) as act:
        act.decide({})
        return lr.sample_pair(current_run(ctx), review_dir(ctx), request.stratum)
