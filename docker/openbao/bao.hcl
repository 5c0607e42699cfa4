# OpenBao for docker-compose.yml: a real server whose data survives restarts, unlike dev mode.
# Mounted read-only as /openbao/config/bao.hcl of the `vault` service; vault-init initialises
# and unseals it. tests/deploy/test_vault_init.py starts this same file with the `bao` binary.

ui = false

# Integrated storage on the vault-data volume: keys and written-back API keys are kept.
storage "raft" {
  path    = "/openbao/file"
  node_id = "vault"
  # Raft's fastest timings: one node, so elections are short (the default waits 5x longer).
  performance_multiplier = 1
}

# Plain HTTP on the compose network only (the port is not published); put TLS here
# (tls_cert_file, tls_key_file) for anything beyond a local trial.
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}

api_addr     = "http://vault:8200"
cluster_addr = "http://vault:8201"

# The services do not renew their token, so it may live this long (vault-init asks for it).
max_lease_ttl = "87600h"
