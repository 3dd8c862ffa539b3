#!/bin/sh
# hello.sh: the example service, run from the deployed working copy's top.
#   sh example/hello.sh start|stop|status
# It logs a line with the deployed commit every few seconds, and exits by
# itself after ten minutes so that a demo leaves nothing running.
set -u
dir=example/run
mkdir -p "$dir"
case "${1:-}" in
start)
	nohup sh example/hello.sh run >>"$dir/hello.log" 2>&1 </dev/null &
	echo $! >"$dir/hello.pid"
	echo "hello started (pid $!), serving $(git rev-parse --short HEAD)"
	;;
stop)
	if [ -f "$dir/hello.pid" ]; then
		kill "$(cat "$dir/hello.pid")" 2>/dev/null
		rm -f "$dir/hello.pid"
		echo "hello stopped"
	else
		echo "hello was not running"
	fi
	;;
status)
	if [ -f "$dir/hello.pid" ] && kill -0 "$(cat "$dir/hello.pid")" 2>/dev/null; then
		echo "hello is running (pid $(cat "$dir/hello.pid"))"
	else
		echo "hello is not running"
		exit 3
	fi
	;;
run)
	version=$(git rev-parse --short HEAD)
	end=$(($(date +%s) + 600))
	while [ "$(date +%s)" -lt "$end" ]; do
		echo "$(date -u +%H:%M:%S) hello from $version"
		sleep 5
	done
	;;
*)
	echo "usage: sh example/hello.sh start|stop|status" >&2
	exit 2
	;;
esac
