# A Habitat-style plan: no hooks, only pkg_svc_run (like core/redis). The Supervisor presets
# pkg_prefix (this directory) and pkg_svc_*_path before sourcing, so they expand here.
pkg_origin=pysup
pkg_name=kvstore
pkg_version=0.1.0
pkg_maintainer="pysup"
pkg_license=("Apache-2.0")
pkg_description="A tiny in-memory key-value server speaking a line protocol"
pkg_deps=(core/python)
pkg_svc_run="python3 -u ${pkg_prefix}/kv.py ${pkg_svc_config_path}/kv.conf"
pkg_exports=(
  [port]=port
  [backlog]=tcp-backlog
)
pkg_exposes=(port)
pkg_shutdown_signal=TERM
pkg_shutdown_timeout_sec=3

do_build() {
  return 0
}

do_install() {
  install -m 0644 "$PLAN_CONTEXT/kv.py" "$pkg_prefix/kv.py"
}
