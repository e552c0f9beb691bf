#!/bin/sh
# The Secrets deploy/k8s/margind.yaml and workers.yaml mount, as YAML on
# stdout:
#
#   deploy/k8s/secrets.sh KEYDIR | kubectl apply -n margin -f -
#
# Keys are made once in KEYDIR (kept there; run it again after adding keys
# and it prints the same Secrets plus the new ones):
#   KEYDIR/margind.key, margind.pub   the daemon's CURVE key pair
#   KEYDIR/worker.key, worker.pub     the worker Deployment's key pair
#   KEYDIR/*.pub (others)             more allowed workers, e.g. Slurm or
#                                     systemd nodes joining the same margind
#   KEYDIR/api-key                    an HTTP API key (clients, Prometheus)
#
# Secrets:
#   margind-curve          margind.key                  (margind)
#   margin-workers-allow   every *.pub but margind.pub  (margind's allow dir)
#   margin-worker-curve    worker.key, margind.pub      (workers)
#   margin-api-keys        api-keys: sha256:DIGEST      (margind's key file)
#   margin-api-key         api-key: the key itself      (clients, Prometheus)
#
# $MARGINCTL is the marginctl to run (default: marginctl on PATH).
set -eu

dir=${1:-}
if [ -z "$dir" ] || [ "$#" -ne 1 ]; then
	echo "usage: secrets.sh KEYDIR > secrets.yaml" >&2
	exit 2
fi
MARGINCTL=${MARGINCTL:-marginctl}

umask 077
mkdir -p "$dir"
for name in margind worker; do
	if [ ! -f "$dir/$name.key" ]; then
		"$MARGINCTL" keygen "$name" -o "$dir" > /dev/null
	fi
done
if [ ! -f "$dir/api-key" ]; then
	# 30 random bytes as 40 URL-safe characters.
	key=$(head -c 30 /dev/urandom | base64 | tr '+/' '-_')
	printf 'sk-margin-%s\n' "$key" > "$dir/api-key"
fi
key=$(head -n 1 "$dir/api-key")
digest=$(printf %s "$key" | sha256sum | cut -d ' ' -f 1)

# Checked before anything is printed: no half output for kubectl apply.
for pub in "$dir"/*.pub; do
	case $(basename "$pub") in
	*[!A-Za-z0-9._-]*)
		echo "secrets.sh: $pub: a Secret key may hold only letters, digits, '.', '_' and '-'" >&2
		exit 1 ;;
	esac
done

b64() { base64 -w 0 < "$1"; }

# secret NAME: the header of a Secret.
secret() {
	printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$1"
	printf '  labels:\n    app.kubernetes.io/part-of: margin\ntype: Opaque\ndata:\n'
}

secret margind-curve
printf '  margind.key: %s\n' "$(b64 "$dir/margind.key")"

secret margin-workers-allow
for pub in "$dir"/*.pub; do
	base=$(basename "$pub")
	[ "$base" = margind.pub ] && continue
	printf '  %s: %s\n' "$base" "$(b64 "$pub")"
done

secret margin-worker-curve
printf '  worker.key: %s\n' "$(b64 "$dir/worker.key")"
printf '  margind.pub: %s\n' "$(b64 "$dir/margind.pub")"

secret margin-api-keys
printf '  api-keys: %s\n' "$(printf 'sha256:%s\n' "$digest" | base64 -w 0)"

secret margin-api-key
printf '  api-key: %s\n' "$(printf '%s' "$key" | base64 -w 0)"
