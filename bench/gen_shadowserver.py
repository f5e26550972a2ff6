#!/usr/bin/env python3
"""Writes a synthetic but realistic Shadowserver `event4_sinkhole_http` report.

Rows follow the report's current 39 columns. An infected-host population is
drawn first (about one host per eight rows, as bots check in repeatedly over
a day), then check-ins are drawn from it with a skew, in time order over one
UTC day. With --ranges, source addresses come from the ranges of a range CSV
(`start,end,asn[,org]`, as in the enrichment data), weighted by size, so that
enrichment finds them; otherwise they are random public IPv4 addresses.

Usage: gen_shadowserver.py --rows N [--seed S] [--ranges FILE] > report.csv
"""

import argparse
import csv
import ipaddress
import random
import sys

COLUMNS = [
    "timestamp", "protocol", "src_ip", "src_port", "src_asn", "src_geo", "src_region",
    "src_city", "src_hostname", "src_naics", "src_sector", "device_vendor", "device_type",
    "device_model", "severity", "dst_ip", "dst_port", "dst_asn", "dst_geo", "dst_region",
    "dst_city", "dst_hostname", "dst_naics", "dst_sector", "public_source", "infection",
    "family", "tag", "application", "version", "event_id", "http_url", "http_host",
    "http_agent", "forwarded_by", "ssl_cipher", "http_referer", "ssl_servername",
    "machine_name",
]

# (infection, family, tag, host pattern, url pattern, port)
FAMILIES = [
    ("andromeda", "gamarue", "andromeda", "{w}.andro{n}.example", "/image.php", 80),
    ("conficker", "conficker", "conficker-b", "{w}{n}.info.example", "/search?q={n}", 80),
    ("sality-p2p", "sality", "sality", "{w}.sal{n}.example", "/logo.gif?{n}", 80),
    ("necurs", "necurs", "necurs", "{w}{n}.necurs.example", "/forum/db.php", 443),
    ("ramnit", "ramnit", "ramnit", "{w}{n}.ram.example", "/", 443),
    ("zeus-gameover", "zeus", "goz", "{w}{n}.goz.example", "/news/index.php", 8080),
    ("avalanche-nymaim", "nymaim", "avalanche", "{w}.nym{n}.example", "/{n}.php", 80),
    ("qsnatch", "qsnatch", "qsnatch", "{w}{n}.qs.example", "/qsnatch/{n}", 80),
]
WORDS = ["cdn", "update", "api", "stat", "img", "srv", "mail", "node"]
AGENTS = [
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "Microsoft-CryptoAPI/10.0",
    "Python-urllib/3.9",
    "",
]
COUNTRIES = ["US", "DE", "FR", "NL", "BR", "IN", "CN", "RU", "GB", "JP", "IT", "ES", "VN", "TR"]
SINKHOLES = ["198.51.100.1", "198.51.100.2", "203.0.113.10", "203.0.113.11"]


def load_ranges(path):
    ranges = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 3 or row[0].startswith("#"):
                continue
            try:
                a = ipaddress.ip_address(row[0].strip())
                b = ipaddress.ip_address(row[1].strip())
                asn = int(row[2])
            except ValueError:
                continue
            if a.version != 4 or b.version != 4 or asn == 0 or b < a:
                continue
            ranges.append((int(a), int(b), asn))
    return ranges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ranges")
    ap.add_argument("--date", default="2026-11-28")
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    ranges = load_ranges(args.ranges) if args.ranges else []
    cumulative, total = [], 0
    for a, b, _ in ranges:
        total += b - a + 1
        cumulative.append(total)

    def random_ip():
        if ranges:
            x = rnd.randrange(total)
            lo, hi = 0, len(cumulative) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if cumulative[mid] > x:
                    hi = mid
                else:
                    lo = mid + 1
            a, b, asn = ranges[lo]
            return str(ipaddress.IPv4Address(rnd.randint(a, b))), asn
        while True:
            ip = ipaddress.IPv4Address(rnd.getrandbits(32))
            if ip.is_global:
                return str(ip), rnd.randint(1, 65000)

    n_hosts = max(1, args.rows // 8)
    hosts = []
    for _ in range(n_hosts):
        ip, asn = random_ip()
        fam = rnd.choice(FAMILIES)
        hosts.append((ip, asn, rnd.choice(COUNTRIES), fam, rnd.choice(AGENTS), rnd.randrange(1, 9999)))

    out = csv.writer(sys.stdout, lineterminator="\r\n")
    out.writerow(COLUMNS)
    for i in range(args.rows):
        secs = i * 86400 // args.rows
        ts = f"{args.date} {secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
        # Skewed towards the first hosts: a few chatty bots, a long tail.
        ip, asn, cc, fam, agent, n = hosts[int(n_hosts * rnd.random() ** 2)]
        infection, family, tag, host, url, port = fam
        w = WORDS[n % len(WORDS)]
        row = dict.fromkeys(COLUMNS, "")
        row.update(
            timestamp=ts, protocol="tcp", src_ip=ip, src_port=str(rnd.randint(1024, 65535)),
            src_asn=str(asn), src_geo=cc, severity="critical",
            dst_ip=rnd.choice(SINKHOLES), dst_port=str(port), dst_asn="64496", dst_geo="US",
            public_source="SinkholeOrg", infection=infection, family=family, tag=tag,
            application="http" if port != 443 else "https",
            http_url=url.format(n=n), http_host=host.format(w=w, n=n), http_agent=agent,
        )
        out.writerow([row[c] for c in COLUMNS])


if __name__ == "__main__":
    main()
