import pytest

from bench.wrk import parse_report

REPORT = """\
Running 8s test @ http://127.0.0.1:40000/api/trading/orders/42
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    24.95ms   15.27ms 215.71ms   86.08%
    Req/Sec     2.61k   410.12     3.41k    72.50%
  Latency Distribution
     50%   21.85ms
     75%   28.04ms
     90%   38.97ms
     99%  850.00us
  20801 requests in 8.01s, 6.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   2597.04
Transfer/sec:    781.44KB
"""


def test_wrk_report_is_read_in_milliseconds():
    result = parse_report(REPORT)
    assert result.requests_per_second == 2597.04
    assert result.p50_ms == 21.85
    assert result.p99_ms == 0.85
    assert result.requests == 20801
    assert result.failures == 7


def test_unreadable_report_is_an_error():
    with pytest.raises(RuntimeError, match="cannot read"):
        parse_report("wrk: connection refused")
