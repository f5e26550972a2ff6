#!/usr/bin/env python3
"""The IntelMQ peer of `takedown import`: Shadowserver parser, deduplicator
and ASN lookup expert, run in library mode over the same report.

Each bot runs through `process_message` with IntelMQ's in-memory pipeline
(`BotLibSettings`), so no queue broker is timed, only the bots' own work.
The deduplicator needs Redis; pass its Unix socket. The ASN expert needs a
pyasn database (`prefix<TAB>asn` lines).

Usage: import_intelmq.py REPORT.csv ROWS REDIS_SOCKET IPASN_FILE
Prints one line: `intelmq ROWS EVENTS WALL_S CPU_S parse=S dedup=S asn=S with_asn=N`
(the stage times are wall time; CPU_S excludes Redis, which runs apart).
Needs INTELMQ_ROOT_DIR with var/lib/bots/shadowserver-schema.json in it.
"""

import base64
import itertools
import sys
import time

from intelmq.lib.bot import BotLibSettings
from intelmq.lib.message import Report
from intelmq.bots.parsers.shadowserver.parser import ShadowserverParserBot
from intelmq.bots.experts.deduplicator.expert import DeduplicatorExpertBot
from intelmq.bots.experts.asn_lookup.expert import ASNLookupExpertBot


def main():
    path, rows, sock, ipasn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with open(path, "rb") as f:
        head = b"".join(itertools.islice(f, rows + 1))

    settings = dict(BotLibSettings, logging_level="ERROR")
    parser = ShadowserverParserBot(
        "shadowserver-parser", settings=dict(settings, feedname="Sinkhole-Events-HTTP IPv4")
    )
    dedup = DeduplicatorExpertBot(
        "deduplicator",
        settings=dict(settings, redis_cache_host=sock, redis_cache_ttl=86400,
                      filter_type="blacklist", filter_keys="raw,time.observation"),
    )
    asn = ASNLookupExpertBot("asn-lookup", settings=dict(settings, database=ipasn))

    report = Report(harmonization=None)
    report.add("raw", base64.b64encode(head).decode(), sanitize=False)
    report.add("feed.name", "Sinkhole-Events-HTTP IPv4")
    report.add("extra.file_name", "2026-11-28-event4_sinkhole_http-example-geo.csv")

    c0, t0 = time.process_time(), time.perf_counter()
    events = parser.process_message(report)["output"]
    t1 = time.perf_counter()
    kept = dedup.process_message(*events)["output"]
    t2 = time.perf_counter()
    out = asn.process_message(*kept)["output"]
    c3, t3 = time.process_time(), time.perf_counter()
    with_asn = sum(1 for e in out if "source.asn" in e)
    print(f"intelmq {rows} {len(out)} {t3 - t0:.3f} {c3 - c0:.3f} parse={t1 - t0:.3f} "
          f"dedup={t2 - t1:.3f} asn={t3 - t2:.3f} with_asn={with_asn}")


if __name__ == "__main__":
    main()
