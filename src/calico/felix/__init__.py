"""calico-felix: the per-host agent's shell around the calculation graph and the dataplane.

Enters: Felix parameters (environment, config file, FelixConfiguration resources) and the datastore.
Leaves: dataplane batches through a `driver.DataplaneDriver`, status keys under `/calico/felix/v2/` (the
verdict rules' counters among them), `/liveness` + `/readiness` and `/metrics` over HTTP.

Modules, in the order data flows: `config` (parameters and precedence), `daemon` (syncer -> calc graph ->
driver, the main loop), `driver` (the dataplane interface and how a backend is found), `status` (reports
into the datastore), `counters` (the verdict rules' kernel counters: read, cached, published) and
`counter_status` (their datastore key and JSON, pure: what calicoctl reads), `health` and `metrics` (served by
`httpserver`), `logs` (key=value logging), `main` (the `calico-felix` command).
"""
