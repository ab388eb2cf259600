"""Users: tokens shown once, stored only as a keyed hash, revocable; OIDC JWTs verified
against a JWKS file made here with a freshly generated key pair."""

from __future__ import annotations

import json
import re
import time

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from joinedup.cli import cli
from joinedup.home import load_home
from joinedup.users import (
    Authenticator,
    AuthError,
    OidcConfig,
    OidcVerifier,
    UserError,
    open_user_store,
)

TOKEN_RE = re.compile(r"token \(shown once, keep it secret\): (\S+)")


def test_cli_add_list_revoke_and_token_is_only_stored_hashed(home):
    runner = CliRunner()
    out = runner.invoke(cli, ["users", "add", "--home", str(home.root), "--role", "adviser",
                              "--org", "csc-margate", "--name", "Ann"])
    assert out.exit_code == 0, out.output
    token = TOKEN_RE.search(out.output).group(1)
    user_id = re.search(r"user (u-[0-9a-f]+)", out.output).group(1)
    stored = (home.root / "users.json").read_text()
    assert token not in stored and token[3:] not in stored
    assert oct((home.root / "users.json").stat().st_mode & 0o777) == "0o600"

    store = open_user_store(load_home(home.root))
    user = store.authenticate(token)
    assert (user.id, user.role, user.organisation) == (user_id, "adviser", "csc-margate")

    listing = runner.invoke(cli, ["users", "list", "--home", str(home.root)])
    assert listing.exit_code == 0 and user_id in listing.output and token not in listing.output

    revoke = runner.invoke(cli, ["users", "revoke", "--home", str(home.root), user_id])
    assert revoke.exit_code == 0, revoke.output
    with pytest.raises(AuthError):
        store.authenticate(token)  # the same store object notices the file changed


def test_bad_role_unknown_user_and_wrong_token(home):
    runner = CliRunner()
    out = runner.invoke(cli, ["users", "add", "--home", str(home.root), "--role", "king", "--org", "x"])
    assert out.exit_code != 0 and "king" in out.output
    out = runner.invoke(cli, ["users", "revoke", "--home", str(home.root), "u-nobody"])
    assert out.exit_code != 0 and "no user 'u-nobody'" in out.output
    store = open_user_store(home)
    _, token = store.add("provider", "prov-a")
    with pytest.raises(AuthError):
        store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"))
    with pytest.raises(UserError):
        store.add("provider", "  ")


def test_hash_is_keyed_by_the_home(tmp_path, home):
    """The same token string hashes differently in another home (keyed, not plain SHA-256)."""
    from joinedup.home import init_home

    other = init_home(tmp_path / "other", project_id="test-project")
    _, token = open_user_store(home).add("adviser", "csc")
    with pytest.raises(AuthError):
        open_user_store(other).authenticate(token)


def test_corrupt_users_file_is_a_clear_error(home):
    (home.root / "users.json").write_text("{not json")
    with pytest.raises(UserError, match="users.json"):
        open_user_store(home).list()


@pytest.fixture
def oidc(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    settings = {"auth": {"oidc": {"issuer": "https://idp.example", "audience": "joinedup",
                                  "jwks": str(jwks)}}}
    return key, OidcVerifier(OidcConfig.from_settings(settings, tmp_path))


def _jwt(key, **over):
    claims = {"iss": "https://idp.example", "aud": "joinedup", "sub": "alice",
              "exp": int(time.time()) + 300, "joinedup_role": "governance",
              "joinedup_org": "board-kent"}
    claims.update(over)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_jwt_verified_against_jwks(oidc, home):
    key, verifier = oidc
    auth = Authenticator(open_user_store(home), verifier)
    user = auth.authenticate(f"Bearer {_jwt(key)}")
    assert (user.id, user.role, user.organisation) == ("oidc:alice", "governance", "board-kent")


@pytest.mark.parametrize(
    "change",
    [{"aud": "other"}, {"iss": "https://evil.example"}, {"exp": int(time.time()) - 10},
     {"joinedup_role": "emperor"}],
)
def test_oidc_rejects_bad_claims(oidc, home, change):
    key, verifier = oidc
    with pytest.raises(AuthError):
        Authenticator(open_user_store(home), verifier).authenticate(f"Bearer {_jwt(key, **change)}")


def test_oidc_rejects_a_token_signed_by_another_key(oidc, home):
    _, verifier = oidc
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        Authenticator(open_user_store(home), verifier).authenticate(f"Bearer {_jwt(other)}")


def test_oidc_disabled_by_default_and_config_validated(home, tmp_path):
    with pytest.raises(AuthError, match="not enabled"):
        Authenticator(open_user_store(home)).authenticate("Bearer a.b.c")
    with pytest.raises(UserError, match="audience"):
        OidcConfig.from_settings({"auth": {"oidc": {"issuer": "x", "jwks": "j"}}}, tmp_path)
