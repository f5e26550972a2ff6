#!/usr/bin/env bash
# Fetches public IP-to-ASN and IP-to-country range tables (no licence key
# needed) into DATA_DIR/enrich/, where `takedown` loads them.
#
#   scripts/fetch-enrichment.sh [DATA_DIR]
#
# DATA_DIR defaults to $TAKEDOWN_DATA, else $XDG_DATA_HOME/takedown, else
# ~/.local/share/takedown (the same default as the `takedown` binary).
# Needs npm (the data ships as npm packages of the ip-location-db project)
# and tar. Licences: CC BY 4.0; see the ATTRIBUTION file written beside the
# data, which must accompany any redistribution or published results.
set -euo pipefail

data="${1:-${TAKEDOWN_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/takedown}}"
dest="$data/enrich"
asn_pkg="@ip-location-db/asn"
country_pkg="@ip-location-db/dbip-country"

command -v npm >/dev/null || { echo "npm is required (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent "$asn_pkg" "$country_pkg" >packed.txt
mkdir asn country
tar -xzf "$(sed -n 1p packed.txt)" -C asn
tar -xzf "$(sed -n 2p packed.txt)" -C country

mkdir -p "$dest"
cp asn/package/asn-ipv4.csv asn/package/asn-ipv6.csv "$dest/"
cp country/package/dbip-country-ipv4.csv country/package/dbip-country-ipv6.csv "$dest/"

version() { sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$1/package/package.json" | head -n1; }
{
  echo "Enrichment data in this directory"
  echo "================================="
  echo
  echo "asn-ipv4.csv, asn-ipv6.csv: $asn_pkg $(version asn), ip-location-db."
  echo "  IP to AS number data by RouteViews (routeviews.org), the NRO (nro.net)"
  echo "  and DB-IP (db-ip.com), licensed under Creative Commons Attribution 4.0"
  echo "  International (CC BY 4.0, https://creativecommons.org/licenses/by/4.0/)."
  echo "  Merged into ranges by the ip-location-db project."
  echo
  echo "dbip-country-ipv4.csv, dbip-country-ipv6.csv: $country_pkg $(version country)."
  echo "  IP Geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0."
  echo
  echo "Licence texts shipped with the packages follow."
  for f in asn/package/*LICENSE* asn/package/MODIFICATIONS country/package/*LICENSE*; do
    [ -f "$f" ] || continue
    echo
    echo "--- $(basename "$f") (from the ${f%%/*} package) ---"
    cat "$f"
    echo
  done
} >"$dest/ATTRIBUTION"

echo "Wrote $(ls "$dest" | tr '\n' ' ')to $dest"
