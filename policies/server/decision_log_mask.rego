# Published to an OPA server with the policies (policies/opa_server.py): what OPA's decision
# log leaves out. The log keeps the decision id, who asked, for what, why, and the answer; the
# details of the person (resource, consent) stay out, as in the project's ledger, which keeps
# only a keyed hash of the input. A decision id in OPA's log finds its ledger entry.
package system.log

mask contains "/input/resource"

mask contains "/input/consent"
