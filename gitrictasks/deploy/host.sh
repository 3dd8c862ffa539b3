# gitric's host script: one run of it drives one host through a deploy,
# in one SSH session. gitric prepends the values it needs:
#   T      token that starts every protocol line on stdout
#   P      repository path (relative to the login directory, or absolute)
#   STOP, START, CHECK   service commands (may be empty), run in $P
#   CHECKWAIT            seconds the check may take to pass
#   LOCK   lock owner description; empty: take no lock (read-only calls)
#   PUSH   1: run git receive-pack for the seed; 0: no push (rollback)
# Standard output carries only the protocol: "$T word args" lines, and git
# receive-pack's own stream between "head" and "seeded". Everything meant
# for people goes to standard error, which gitric prints prefixed by host.
set -u
# A relative path is relative to the login user's home, as with scp.
case $P in /*) ;; *) cd "${HOME:-.}" 2>/dev/null || true ;; esac
trap : PIPE
say() { printf '%s %s\n' "$T" "$*"; }
die() { printf 'gitric: %s\n' "$2" >&2; say error "$1"; exit 1; }

command -v git >/dev/null 2>&1 || die nogit "git is not installed on this host, or not on the PATH of a non-interactive ssh login (install it: apt-get install git)"
if [ ! -d "$P" ]; then
	mkdir -p -- "$P" 2>/dev/null || die path "cannot create $P as $(id -un): permission denied or a file is in the way; create it with the right owner, or choose another path"
fi
cd -- "$P" 2>/dev/null || die path "cannot enter $P as $(id -un)"
if [ "$(git rev-parse --git-dir 2>/dev/null)" != .git ]; then
	[ -w . ] || die path "$PWD is not writable by $(id -un): give that user the directory, or choose another path"
	if [ -n "$(ls -A)" ]; then die path "$PWD is not empty and is not a git repository; gitric will not take it over: empty it or choose another path"; fi
	{ git -c init.defaultBranch=main init -q . && git config receive.denyCurrentBranch ignore; } >&2 || die init "git init failed in $PWD"
fi
G=$PWD/.git/gitric
mkdir -p "$G" 2>/dev/null || die path "$PWD/.git is not writable by $(id -un)"

locked=
if [ -n "$LOCK" ]; then
	if mkdir "$G/lock" 2>/dev/null; then
		printf '%s\n' "$LOCK" >"$G/lock/owner"
		trap 'rm -rf "$G/lock"' EXIT
		trap 'exit 1' HUP INT TERM
	else
		locked=1
		say locked "$(cat "$G/lock/owner" 2>/dev/null || echo 'an unknown deploy')"
	fi
fi

if [ -f "$G/audit.log" ]; then
	tail -n 200 "$G/audit.log" | while IFS= read -r line; do say audit "$line"; done
fi
head=$(git rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || head=none
say head "$head"
say modified "$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l | tr -d ' ')"

if [ -z "$locked" ] && [ "$PUSH" = 1 ]; then
	git receive-pack . || die seed "git receive-pack failed in $PWD"
	say seeded
fi

cutover() {
	cur=$(git rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || cur=none
	# A signal now must not leave the service down: finish the step first.
	trap : HUP INT TERM
	say stopping
	if [ -n "$STOP" ] && [ "$cur" != none ]; then
		sh -c "$STOP" >&2 </dev/null
		s=$?
		say stopped $s
		if [ $s -ne 0 ]; then
			trap 'exit 1' HUP INT TERM
			return
		fi
	else
		say stopped -
	fi
	git reset -q --hard "$1" >&2 </dev/null
	r=$?
	[ $r -ne 0 ] || git --no-pager log -1 --format='HEAD is now at %h %s' >&2
	say reset $r
	s=0
	[ -z "$START" ] || { sh -c "$START" >&2 </dev/null; s=$?; }
	say started $s
	trap 'exit 1' HUP INT TERM
	c=-
	if [ -n "$CHECK" ] && [ $r -eq 0 ] && [ $s -eq 0 ]; then
		end=$(($(date +%s) + CHECKWAIT))
		until sh -c "$CHECK" >&2 </dev/null; do
			if [ "$(date +%s)" -ge "$end" ]; then c=1; break; fi
			sleep 1
		done
		[ "$c" = 1 ] || c=0
	fi
	say checked $c
}

while read -r cmd arg; do
	case $cmd in
	cutover)
		[ -z "$locked" ] || continue
		case $arg in *[!0-9a-f]* | '') die proto "bad commit '$arg'" ;; esac
		cutover "$arg"
		;;
	log)
		printf '%s\n' "$arg" >>"$G/audit.log"
		say logged
		;;
	*) die proto "unknown command '$cmd'" ;;
	esac
done
exit 0
