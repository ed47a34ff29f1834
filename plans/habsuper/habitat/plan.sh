# The shape of the plan the project started from (the "habsup" blog post): a program under bin/
# started by hooks/run, a health check in hooks/health_check (the old underscore name Habitat
# still runs) that calls curl from a dependency through pkgPathFor, and no build step here: pysup
# runs the plan in place, so {{pkg.path}} is plans/habsuper and bin/habsuper is what "the build"
# would have installed. The habitat/ subdirectory is the in-repo layout Habitat uses.
pkg_name=habsuper
pkg_origin=pysup
pkg_version="0.1.0"
pkg_maintainer="pysup"
pkg_license=("Apache-2.0")
pkg_deps=( core/curl core/python )
pkg_build_deps=()
pkg_bin_dirs=(bin)
pkg_exports=(
  [port]=http.port
)
pkg_exposes=(port)
