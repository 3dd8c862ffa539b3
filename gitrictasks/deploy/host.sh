# gitric's host script: one run of it drives one host through a deploy,
# in one SSH session. gitric prepends the values it needs:
#   T      token that starts every protocol line on stdout
#   P      deploy root (relative to the login directory, or absolute)
#   MODE   inplace: $P is the repository and the working copy;
#          release: $P/repo holds the objects, each deploy checks out
#            $P/releases/<time>-<sha>, $P/current points at the live one;
#          bluegreen: $P/repo, working copies $P/blue and $P/green,
#            $P/live and $P/next point at them; deploys go to next.
#   KEEP   releases to keep (release mode)
#   STOP, START, CHECK   service commands (may be empty)
#   CHECKWAIT            seconds the check may take to pass
#   LOCK   lock owner description; empty: take no lock
#   PUSH   1: run git receive-pack for the seed; 0: no push (rollback)
#   AUDIT  1: report the audit log's last lines (rollback needs them)
#   SUBMODULES  1: check out the submodules recorded in each deployed tree
#   colorenv()           exports a colour's settings (bluegreen)
# Standard output carries only the protocol: "$T word args" lines, and git
# receive-pack's own stream between "head" and "seeded". Everything meant
# for people goes to standard error, which gitric prints prefixed by host.
set -u
# A relative path is relative to the login user's home, as with scp.
case $P in /*) ;; *) cd "${HOME:-.}" 2>/dev/null || true ;; esac
trap : PIPE
say() { printf '%s %s\n' "$T" "$*"; }
die() { printf 'gitric: %s\n' "$2" >&2; say error "$1"; exit 1; }
me() { id -un; }

command -v git >/dev/null 2>&1 || die nogit "git is not installed on this host, or not on the PATH of a non-interactive ssh login (install it: apt-get install git)"
if [ ! -d "$P" ]; then
	mkdir -p -- "$P" 2>/dev/null || die path "cannot create $P as $(me): permission denied or a file is in the way; create it with the right owner, or choose another path"
fi
cd -- "$P" 2>/dev/null || die path "cannot enter $P as $(me)"
P=$PWD
empty() { [ -z "$(ls -A)" ] || die path "$P is not empty and is not a gitric $MODE root; gitric will not take it over: empty it or choose another path"; }
case $MODE in
inplace)
	if [ ! -f .git/HEAD ]; then
		[ -w . ] || die path "$P is not writable by $(me): give that user the directory, or choose another path"
		empty
		{ git -c init.defaultBranch=main init -q . && git config receive.denyCurrentBranch ignore; } >&2 || die init "git init failed in $P"
	fi
	R=$P/.git W=$P RP=.
	;;
release | bluegreen)
	if [ ! -d repo ]; then
		[ -w . ] || die path "$P is not writable by $(me): give that user the directory, or choose another path"
		empty
		git -c init.defaultBranch=main init -q --bare repo >&2 || die init "git init failed in $P/repo"
	fi
	R=$P/repo RP=repo W=$P/current
	[ "$MODE" = release ] || W=$P/next
	;;
*) die proto "unknown mode $MODE" ;;
esac
G=$R/gitric
[ -d "$G" ] || mkdir -p "$G" 2>/dev/null || die path "$R is not writable by $(me)"

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

if [ "$AUDIT" = 1 ] && [ -f "$G/audit.log" ]; then
	tail -n 200 "$G/audit.log" | while IFS= read -r line; do say audit "$line"; done
fi
headof() { git -C "$1" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null || echo none; }
head=none
[ ! -d "$W" ] || head=$(headof "$W")
say head "$head"
if [ "$head" != none ]; then
	n=0
	git -C "$W" status --porcelain --untracked-files=no 2>/dev/null | while IFS= read -r line; do
		n=$((n + 1))
		[ $n -gt 20 ] || say changed "$line"
	done
fi
say modified

if [ -z "$locked" ] && [ "$PUSH" = 1 ]; then
	git receive-pack "$RP" || die seed "git receive-pack failed in $P/$RP"
	say seeded
fi

# run CMD DIR [COLOR]: a service command in a working copy, in a subshell.
run() {
	(cd "$2" && { [ -z "${3:-}" ] || colorenv "$3"; } && eval "$1") >&2 </dev/null
}

# submodules DIR: check out the submodules DIR's commit records, at the
# commits it records, recursively. Their repositories borrow the objects
# the push put in $R, so nothing is ever fetched.
submodules() {
	[ "$SUBMODULES" = 1 ] || return 0
	subtree "$1" "$(git -C "$1" rev-parse --absolute-git-dir)"
}

# subtree WORKTREE GITDIR
subtree() {
	[ -f "$1/.gitmodules" ] || return 0
	git -C "$1" ls-tree -r HEAD | while read -r mode type sha path; do
		[ "$mode" = 160000 ] || continue
		name=$(git -C "$1" config -f .gitmodules --get-regexp '^submodule\..*\.path$' | while read -r key p; do
			if [ "$p" = "$path" ]; then
				key=${key#submodule.}
				printf '%s\n' "${key%.path}"
				break
			fi
		done)
		[ -n "$name" ] || { echo "gitric: $1/$path: no .gitmodules entry" >&2; return 1; }
		gd=$2/modules/$name
		if [ ! -f "$gd/HEAD" ]; then
			mkdir -p "$gd" && git --git-dir="$gd" init -q && git --git-dir="$gd" config core.bare false || return 1
		fi
		mkdir -p "$gd/objects/info" "$1/$path" || return 1
		printf '%s\n' "$R/objects" >"$gd/objects/info/alternates"
		git --git-dir="$gd" config core.worktree "$1/$path"
		printf 'gitdir: %s\n' "$gd" >"$1/$path/.git"
		git -C "$1/$path" reset -q --hard "$sha" || return 1
		echo "submodule $path is now at $(printf %.7s "$sha")"
		subtree "$1/$path" "$gd" || return 1
	done
}

check() {
	c=-
	if [ -n "$CHECK" ] && [ "$1" -eq 0 ]; then
		end=$(($(date +%s) + CHECKWAIT))
		until run "$CHECK" "$2" "${3:-}"; do
			if [ "$(date +%s)" -ge "$end" ]; then c=1; break; fi
			sleep 1
		done
		[ "$c" = 1 ] || c=0
	fi
	say checked $c
}

# swaplink NAME TARGET: point the symlink NAME at TARGET with one rename(2),
# so that NAME always resolves to the old or the new target, never nothing.
swaplink() {
	ln -sfn "$2" "$1.gitric-new" && mv -fT "$1.gitric-new" "$1"
}

cutover_inplace() {
	say stopping
	if [ -n "$STOP" ] && [ "$(headof .)" != none ]; then
		run "$STOP" .
		s=$?
		say stopped $s
		[ $s -eq 0 ] || return
	else
		say stopped -
	fi
	git reset --hard "$1" >&2 </dev/null && submodules "$P" >&2 </dev/null
	r=$?
	say reset $r
	s=0
	[ -z "$START" ] || { run "$START" .; s=$?; }
	say started $s
	check $((r + s)) .
}

cutover_release() {
	# Prepare the release while the service runs: reuse one of this commit,
	# or check out a new one sharing the repository's objects.
	short=$(printf %.7s "$1")
	rel=
	for d in releases/*-"$short"; do
		[ -d "$d" ] && [ "$(headof "$d")" = "$1" ] && rel=$d
	done
	if [ -z "$rel" ]; then
		mkdir -p releases
		rel=releases/$(date -u +%Y%m%dT%H%M%SZ)-$short
		{ git --git-dir="$R" worktree add -q --detach "$P/$rel" "$1" && submodules "$P/$rel"; } >&2 </dev/null || {
			say stopping
			say stopped p
			return
		}
	fi
	prev=$(readlink current 2>/dev/null || true)
	say stopping
	if [ -n "$STOP" ] && [ -n "$prev" ]; then
		run "$STOP" current
		s=$?
		say stopped $s
		[ $s -eq 0 ] || return
	else
		say stopped -
	fi
	swaplink current "$rel"
	r=$?
	say reset $r
	s=0
	[ -z "$START" ] || { run "$START" current; s=$?; }
	say started $s
	[ $r -ne 0 ] || printf 'current is now %s: %s\n' "$rel" "$(git -C current --no-pager log -1 --format='%h %s')" >&2
	check $((r + s)) current
	# Keep the newest KEEP releases, and always the live and previous ones.
	ls -1d releases/*/ 2>/dev/null | sed 's#/$##' | sort -r | tail -n +$((KEEP + 1)) | while IFS= read -r old; do
		[ "$old" = "$rel" ] || [ "$old" = "$prev" ] || [ "$old" = "${prev#"$P"/}" ] && continue
		git --git-dir="$R" worktree remove --force "$P/$old" >&2 2>/dev/null || rm -rf "$old"
	done
	git --git-dir="$R" worktree prune 2>/dev/null
}

cutover_bluegreen() {
	if [ ! -L next ]; then
		# First deploy: both colours start on this commit; blue is live.
		for c in blue green; do
			{ git --git-dir="$R" worktree add -q --detach "$P/$c" "$1" && submodules "$P/$c"; } >&2 </dev/null || {
				say stopping
				say stopped p
				return
			}
		done
		swaplink live blue && swaplink next green
	fi
	color=$(basename "$(readlink next)")
	say stopping
	if [ -n "$STOP" ] && [ "$(headof next)" != none ]; then
		run "$STOP" next "$color"
		s=$?
		say stopped $s
		[ $s -eq 0 ] || return
	else
		say stopped -
	fi
	git -C next reset -q --hard "$1" >&2 </dev/null && submodules "$P/$color" >&2 </dev/null
	r=$?
	say reset $r
	s=0
	[ -z "$START" ] || { run "$START" next "$color"; s=$?; }
	say started $s
	[ $r -ne 0 ] || printf 'next (%s) is now at %s; live is %s\n' "$color" "$(git -C next --no-pager log -1 --format='%h %s')" "$(basename "$(readlink live)")" >&2
	check $((r + s)) next "$color"
}

swap_bluegreen() {
	[ -L live ] && [ -L next ] || die proto "$P has no blue/green deploy to swap yet"
	l=$(readlink live) n=$(readlink next)
	swaplink live "$n" && swaplink next "$l"
	r=$?
	printf 'live is now %s (%s), next is %s\n' "$(basename "$n")" "$(git -C live --no-pager log -1 --format='%h %s')" "$(basename "$l")" >&2
	say swapped $r
}

while read -r cmd arg; do
	case $cmd in
	cutover)
		[ -z "$locked" ] || continue
		case $arg in *[!0-9a-f]* | '') die proto "bad commit '$arg'" ;; esac
		# A signal now must not leave the service down: finish the step.
		trap : HUP INT TERM
		"cutover_$MODE" "$arg"
		trap 'exit 1' HUP INT TERM
		;;
	swap)
		[ -z "$locked" ] || continue
		swap_bluegreen
		;;
	log)
		printf '%s\n' "$arg" >>"$G/audit.log"
		say logged
		;;
	*) die proto "unknown command '$cmd'" ;;
	esac
done
exit 0
