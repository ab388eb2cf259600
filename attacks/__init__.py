"""attacks: the project's own attacks on its extracts, run as an honest-but-curious linkage
unit (or collation store) would, with ground truth to score them (docs/PRIVACY.md).

Each attack takes what the attacker holds (an extract's linkage or content file, public
frequency lists built from the population, a plaintext copy of 1% of the people) and
returns an `AttackResult`: how many records it re-identified, i.e. tied to the right
person of the population register, counted in expectation (a guess that leaves k
candidates, the right one among them, counts 1/k).

- `world`: loads extracts with their ground truth (which person each row is, the row's
  standardised plaintext) and builds the register and the public frequency lists;
- `frequency`: frequency alignment on every token / match-key column, one by one and
  combined into a profile;
- `bloom`: pattern mining on the Bloom filters (bit co-occurrence clusters aligned with
  bigram frequencies, Christen et al. 2017/2018), noise removal by grouping, and
  known-plaintext learning of bigram positions;
- `known_plaintext`: re-identification with 1% of the population in plaintext (token
  dictionary + learned filters) and public frequency lists;
- `layout`: ciphertext-length inference, row order, and cross-project linkage;
- `views`: the salted filters and their second views: salt-invariant fingerprints
  (known plaintext, frequency alignment), equal-value dictionaries, cross-project linkage
  by filter repeat counts, and a bound for aligning salt frames;
- `salt_graph`: graph matching inside postcode salt groups: the Dice of two filters under
  one salt is public, so each postcode's name-similarity graph is matched to the
  register's (after Vidanage et al. 2020);
- `suite.run_all`: every attack on a set of extracts, as rows for a report.
"""

from attacks.result import AttackResult
from attacks.suite import run_all
from attacks.world import World, load_world

__all__ = ["AttackResult", "World", "load_world", "run_all"]
