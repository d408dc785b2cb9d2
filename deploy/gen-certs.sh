#!/usr/bin/env bash
# Create the webhook's TLS certificate (a private CA plus a serving certificate
# for the Service's DNS names), a webhook configuration with caBundle set, and
# the client certificate the API server presents to the webhook.
#
#   deploy/gen-certs.sh [--out DIR] [--namespace NS] [--service NAME] [--days N] [--apply]
#
# Writes DIR/ca.crt, DIR/tls.crt, DIR/tls.key, DIR/tls-secret.yaml (the
# kubernetes.io/tls Secret the Deployment mounts), DIR/webhook.yaml
# (deploy/webhook.yaml with clientConfig.caBundle filled in) and
# DIR/mutating-webhook.yaml (the optional digest-pinning webhook, likewise).
# For the webhook's client-certificate requirement (--client-ca): a second CA,
# DIR/client-ca.crt, in DIR/client-ca-secret.yaml (the attest-admission-client-ca
# Secret the Deployment mounts), and the API server's client certificate
# DIR/apiserver-client.crt and .key with DIR/admission-configuration.yaml and
# DIR/webhook-kubeconfig.yaml: copy those four to /etc/kubernetes/attest/ on
# every control-plane node and start kube-apiserver with
# --admission-control-config-file=/etc/kubernetes/attest/admission-configuration.yaml.
# With --apply it also runs `kubectl apply` on both Secrets and webhook.yaml (the
# mutating webhook stays opt-in). The certificate also names the ops Service
# (<service>-ops) so Prometheus and AppSec can verify it. The CA keys are not
# kept: rerun to rotate. Alternative: cert-manager, see deploy/cert-manager/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=./attest-certs
namespace=attest-system
service=attest-admission
secret=attest-admission-tls
days=365
apply=false

die() { echo "gen-certs.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --namespace) namespace=${2:?--namespace needs a name}; shift 2 ;;
    --service) service=${2:?--service needs a name}; shift 2 ;;
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --apply) apply=true; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$days" =~ ^[0-9]+$ ]] || die "--days must be a number, not '$days'"
[[ "$namespace" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "invalid namespace '$namespace'"
[[ "$service" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "invalid service name '$service'"
command -v openssl >/dev/null || die "openssl is not installed"
if $apply; then command -v kubectl >/dev/null || die "--apply needs kubectl"; fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

dns=""
for name in "${service}" "${service}-ops"; do
  dns="${dns}${dns:+,}DNS:${name},DNS:${name}.${namespace},DNS:${name}.${namespace}.svc,DNS:${name}.${namespace}.svc.cluster.local"
done

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$work/ca.key" -out "$work/ca.crt" -days "$days" \
  -subj "/CN=attest-admission-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$work/tls.key" -out "$work/tls.csr" \
  -subj "/CN=${service}.${namespace}.svc" 2>/dev/null

cat > "$work/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=${dns}
EXT
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -out "$work/tls.crt" -days "$days" -sha256 -extfile "$work/ext.cnf" 2>/dev/null

# The API server's client certificate, from a CA of its own: the webhook accepts
# exactly the certificates this CA issued (and the CA key is thrown away).
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$work/client-ca.key" -out "$work/client-ca.crt" -days "$days" \
  -subj "/CN=attest-admission-client-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$work/apiserver-client.key" -out "$work/apiserver-client.csr" \
  -subj "/CN=kube-apiserver" 2>/dev/null
cat > "$work/client-ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -in "$work/apiserver-client.csr" -CA "$work/client-ca.crt" \
  -CAkey "$work/client-ca.key" -CAcreateserial -out "$work/apiserver-client.crt" \
  -days "$days" -sha256 -extfile "$work/client-ext.cnf" 2>/dev/null

b64() { base64 -w0 < "$1"; }
cat > "$work/client-ca-secret.yaml" <<SECRET
apiVersion: v1
kind: Secret
metadata:
  name: attest-admission-client-ca
  namespace: ${namespace}
  labels:
    app.kubernetes.io/name: attest-admission
    app.kubernetes.io/part-of: attest
type: Opaque
data:
  ca.crt: $(b64 "$work/client-ca.crt")
SECRET

# For the control plane: the API server finds the credentials for a webhook
# Service by its DNS name (<service>.<namespace>.svc, port 443).
kubeconfig_dir=/etc/kubernetes/attest
cat > "$work/admission-configuration.yaml" <<CONFIG
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: ${kubeconfig_dir}/webhook-kubeconfig.yaml
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: ${kubeconfig_dir}/webhook-kubeconfig.yaml
CONFIG
cat > "$work/webhook-kubeconfig.yaml" <<KUBECONFIG
apiVersion: v1
kind: Config
users:
  - name: ${service}.${namespace}.svc
    user:
      client-certificate: ${kubeconfig_dir}/apiserver-client.crt
      client-key: ${kubeconfig_dir}/apiserver-client.key
KUBECONFIG
cat > "$work/tls-secret.yaml" <<SECRET
apiVersion: v1
kind: Secret
metadata:
  name: ${secret}
  namespace: ${namespace}
  labels:
    app.kubernetes.io/name: attest-admission
    app.kubernetes.io/part-of: attest
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$work/tls.crt")
  tls.key: $(b64 "$work/tls.key")
  ca.crt: $(b64 "$work/ca.crt")
SECRET

ca_bundle=$(b64 "$work/ca.crt")
with_ca_bundle() {  # deploy/$1 with caBundle, namespace and service name filled in
  awk -v bundle="$ca_bundle" -v ns="$namespace" -v svc="$service" '
    /^ *caBundle:/ { next }
    /^ *clientConfig:/ { print; match($0, /^ */); printf "%*scaBundle: %s\n", RLENGTH + 2, "", bundle; next }
    /^ *namespace: attest-system$/ { sub(/attest-system$/, ns) }
    /values:.*"attest-system"/ { sub(/"attest-system"/, "\"" ns "\"") }
    /^ *name: attest-admission$/ && inservice { sub(/attest-admission$/, svc) }
    /^ *service:$/ { inservice = 1 } /^ *path:/ { inservice = 0 }
    { print }
  ' "$here/$1" > "$work/$1"
  grep -q "caBundle: ${ca_bundle}" "$work/$1" || die "could not set caBundle in $1"
}
with_ca_bundle webhook.yaml
with_ca_bundle mutating-webhook.yaml

umask 022
install -m 0644 "$work/ca.crt" "$work/tls.crt" "$work/webhook.yaml" "$work/mutating-webhook.yaml" \
  "$work/client-ca.crt" "$work/client-ca-secret.yaml" "$work/apiserver-client.crt" \
  "$work/admission-configuration.yaml" "$work/webhook-kubeconfig.yaml" "$out/"
install -m 0600 "$work/tls.key" "$work/tls-secret.yaml" "$work/apiserver-client.key" "$out/"
echo "gen-certs.sh: wrote $out/{ca.crt,tls.crt,tls.key,tls-secret.yaml,webhook.yaml,mutating-webhook.yaml} for ${service}.${namespace}.svc" >&2
echo "gen-certs.sh: wrote $out/{client-ca.crt,client-ca-secret.yaml}, and for every control-plane node $out/{apiserver-client.crt,apiserver-client.key,admission-configuration.yaml,webhook-kubeconfig.yaml} (copy to ${kubeconfig_dir}/)" >&2

if $apply; then
  kubectl apply -f "$out/tls-secret.yaml"
  kubectl apply -f "$out/client-ca-secret.yaml"
  kubectl apply -f "$out/webhook.yaml"
fi
