# Shared by the scripts in this folder: source it after defining usage() (which prints the
# script's usage to stderr and exits with its first argument, default 2).

fail() {
    echo "error: $1" >&2
    usage 2
}

# help_requested "$@": show usage and exit 0 on -h / --help.
help_requested() {
    if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
        usage 0
    fi
}

# require_dir NAME PATH / require_file NAME PATH: a clear error naming the argument.
require_dir() {
    [[ -d "$2" ]] || fail "$1 is not a folder: $2"
}

require_file() {
    [[ -f "$2" ]] || fail "$1 is not a file: $2"
}
