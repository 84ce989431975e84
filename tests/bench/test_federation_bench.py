"""Federation (issue 14): 1 KiB messages/s across one route beside the same producer into the destination
directly (perf/federation_rate.py: A pulls fed.direct/k from B; one cypid.client producer sends into A, then
into B; a consumer on A's queue counts them). `make bench` runs 50,000 messages a case (best of 3 rounds);
under `make test` (benchmarks disabled) one round of 2,000, as a smoke test."""
import os

import pytest

from cypid.perf import federation_rate


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_route_rate_beside_direct(benchmark, broker_factory, request, durable):
    enabled = request.config.getoption("benchmark_enable", False)
    count = 50_000 if enabled else 2_000
    a = broker_factory("--link-maintenance-interval", "0.1")
    b = broker_factory("--link-maintenance-interval", "0.1")
    federation_rate.prepare(a.url, b.url, durable)
    results = []
    benchmark.pedantic(lambda: results.append(federation_rate.rates(a.url, b.url, count, 1024, durable)),
                       rounds=3 if enabled else 1)
    direct = max(r[0] for r in results)
    routed = max(r[1] for r in results)
    benchmark.extra_info.update(direct_msgs_per_sec=round(direct), routed_msgs_per_sec=round(routed),
                                ratio=round(routed / direct, 2))
    load = os.getloadavg()[0]
    print("\nfederation %s, 1 KiB x %d: direct into A %.0f msgs/s, across the route B->A %.0f msgs/s "
          "(ratio %.2f; best of %d; load %.1f)" % ("durable" if durable else "transient", count, direct,
                                                  routed, routed / direct, len(results), load))
