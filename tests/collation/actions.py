"""The collation tests' calls, through joinedup.operations (the one way in), in the shape
the tests use: a subject dict in, the API's JSON shape out."""

from __future__ import annotations

from joinedup import operations as ops
from joinedup.errors import CollationInputError  # noqa: F401  (the tests catch it from here)
from joinedup.operations.referrals import ReadReferral, read_referral
from joinedup.users import User


def _caller(subject) -> User:
    return subject if isinstance(subject, User) else User(**subject)


def request_summary(ctx, subject, identifiers, **options) -> dict:
    request = ops.SummaryRequest(identifiers=identifiers, **options)
    return ops.request_summary(ctx, _caller(subject), request).to_dict()


def request_area_counts(ctx, subject, **options) -> dict:
    return ops.request_area_counts(ctx, _caller(subject), ops.AreaCountsRequest(**options))


def request_referral_summary(ctx, subject, referral, as_of=None) -> dict:
    read = read_referral(ctx, _caller(subject), ReadReferral(referral.referral_id, as_of=as_of))
    return {**read.summary.to_dict(), "referral": read.referral.public()}


def create_referral(ctx, subject, identifiers, provider, barriers, purpose):
    return ops.create_referral(ctx, _caller(subject), ops.CreateReferral(
        identifiers=identifiers, provider=provider, barriers=barriers, purpose=purpose))
