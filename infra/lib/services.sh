# shellcheck shell=bash
# infra/lib/services.sh — Floodgate's own processes, shared by infra/stack (one of
# each) and infra/cluster (two of most, behind HAProxy). Sourced, not run.
#
# The caller defines say/warn/die and sets:
#   ROOT            the repository; the caller runs from it (cargo and the
#                   processes start there)
#   SVC_OWNER       its name for messages ("infra/stack", "infra/cluster")
#   SVC_STATE       state: operator-token, admin-password
#   SVC_LOG_DIR     one <name>.log per process
#   SVC_PID_DIR     one <name>.pid per process
#   SVC_KEY_DIR     the signing key, queue-token, order-token and link secrets (ensure_keys)
#   SVC_STRICT      1: a port answered by a process the caller did not start is fatal
#   GATEWAY         where API calls go (the demo event, the token check)
#   PROCS           one entry per process, started in order, stopped in reverse:
#                   "name|command args|health URL[|VAR=value VAR=value..]"
#                   (the optional fourth field is that process's own environment,
#                   on top of the exported one; values without spaces)
#   HEALTH_TIMEOUT, STOP_TIMEOUT   seconds
# svc_profile sets PROFILE and BIN from FLOODGATE_PROFILE and CARGO_TARGET_DIR.

# setdefault NAME VALUE — export NAME=VALUE unless the caller set NAME (even to
# the empty string, so e.g. FLOODGATE_RATE_ALLOWLIST= can switch it off).
setdefault() {
    if [[ -z ${!1+set} ]]; then export "$1=$2"; else export "${1?}"; fi
}

# svc_profile — PROFILE (release unless FLOODGATE_PROFILE=debug) and BIN, the
# directory of the binaries (a caller's CARGO_TARGET_DIR is respected; relative
# ones are relative to the repo root, where cargo runs).
svc_profile() {
    if [[ ${FLOODGATE_PROFILE:-release} == debug ]]; then
        PROFILE=debug
    else
        PROFILE=release
    fi
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $target == /* ]] || target="$ROOT/$target"
    BIN="$target/$PROFILE"
    # rustup installs cargo in ~/.cargo/bin, which non-login shells may not have.
    if ! command -v cargo >/dev/null 2>&1 && [[ -d ${HOME:-/nonexistent}/.cargo/bin ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# parse_proc ENTRY — the globals P_NAME, P_CMD (array), P_URL and P_ENV (array).
parse_proc() {
    local cmd envs
    IFS='|' read -r P_NAME cmd P_URL envs <<<"$1"
    read -ra P_CMD <<<"$cmd"
    read -ra P_ENV <<<"$envs"
}

healthy() { curl -fs -o /dev/null --max-time 2 "$1"; }

# live_pid NAME PROG — the pid recorded for NAME if that process is still alive
# and still runs PROG (guards against pid reuse after a reboot).
live_pid() {
    local name=$1 prog=$2 pid arg
    [[ -f $SVC_PID_DIR/$name.pid ]] || return 1
    pid=$(<"$SVC_PID_DIR/$name.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # argv[0] for a binary; a later argument for a script run by an interpreter.
    while IFS= read -r -d '' arg; do
        if [[ ${arg##*/} == "$prog" ]]; then
            printf '%s\n' "$pid"
            return 0
        fi
    done 2>/dev/null <"/proc/$pid/cmdline"
    return 1
}

# proc_entry NAME — the PROCS entry of NAME, or die.
proc_entry() {
    local entry
    for entry in "${PROCS[@]}"; do
        parse_proc "$entry"
        if [[ $P_NAME == "$1" ]]; then
            printf '%s\n' "$entry"
            return 0
        fi
    done
    die "no process named '$1' (one of: $(proc_names))"
}

proc_names() {
    local e out=()
    for e in "${PROCS[@]}"; do out+=("${e%%|*}"); done
    printf '%s\n' "${out[*]}"
}

# is_proc NAME — NAME is one of PROCS.
is_proc() {
    local e
    for e in "${PROCS[@]}"; do [[ ${e%%|*} == "$1" ]] && return 0; done
    return 1
}

# proc_pid NAME — the live pid of the process NAME.
proc_pid() {
    local entry
    entry=$(proc_entry "$1")
    parse_proc "$entry"
    live_pid "$P_NAME" "${P_CMD[0]}"
}

ensure_keys() {
    mkdir -p "$SVC_KEY_DIR"
    chmod 700 "$SVC_KEY_DIR"
    if [[ ! -f $SVC_KEY_DIR/dev-1.key.pem ]]; then
        say "generating dev Ed25519 signing key $SVC_KEY_DIR/dev-1.key.pem"
        (umask 077 && openssl genpkey -algorithm ed25519 -out "$SVC_KEY_DIR/dev-1.key.pem")
        rm -f "$SVC_KEY_DIR/dev-1.pub.pem"
    fi
    if [[ ! -f $SVC_KEY_DIR/dev-1.pub.pem ]]; then
        openssl pkey -in "$SVC_KEY_DIR/dev-1.key.pem" -pubout -out "$SVC_KEY_DIR/dev-1.pub.pem"
    fi
    # The key that derives buyers' order tokens (orders refuses to start without one).
    if [[ ! -f $SVC_KEY_DIR/order-token.secret ]]; then
        (umask 077 && openssl rand -hex 32 >"$SVC_KEY_DIR/order-token.secret")
    fi
    # The key that derives access-link tokens (fulfilment refuses to start without one).
    if [[ ! -f $SVC_KEY_DIR/queue-1.secret ]]; then
        # The gateways' shared queue-token key (HMAC): only gateways read it.
        (umask 077 && openssl rand -hex 32 >"$SVC_KEY_DIR/queue-1.secret")
    fi
    if [[ ! -f $SVC_KEY_DIR/link.secret ]]; then
        (umask 077 && openssl rand -hex 32 >"$SVC_KEY_DIR/link.secret")
    fi
}

# build — cargo build the binaries (unless FLOODGATE_SKIP_BUILD=1) and check that
# every process's binary is there.
build() {
    if [[ ${FLOODGATE_SKIP_BUILD:-0} == 1 ]]; then
        say "skipping build (FLOODGATE_SKIP_BUILD=1), using $BIN"
    else
        say "building ($PROFILE)"
        if [[ $PROFILE == release ]]; then
            SQLX_OFFLINE=true cargo build --release --bins
        else
            SQLX_OFFLINE=true cargo build --bins
        fi
    fi
    local entry
    for entry in "${PROCS[@]}"; do
        parse_proc "$entry"
        [[ -x $BIN/${P_CMD[0]} ]] || die "binary $BIN/${P_CMD[0]} not found (build failed or FLOODGATE_PROFILE mismatch?)"
    done
}

ensure_database() {
    # Talk to the maintenance database "postgres" on the same server as
    # DATABASE_URL, and create the target database if it is missing.
    local base=${DATABASE_URL%%\?*} query="" db admin
    [[ $DATABASE_URL == *\?* ]] && query="?${DATABASE_URL#*\?}"
    db=${base##*/}
    admin="${base%/*}/postgres$query"
    [[ $db =~ ^[A-Za-z0-9_]+$ ]] || die "unexpected database name '$db' in DATABASE_URL"
    if [[ -z $(psql -w "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname='$db'") ]]; then
        say "creating database $db"
        psql -w "$admin" -qc "CREATE DATABASE \"$db\"" >/dev/null
    fi
}

# start_proc ENTRY — start one process unless it already runs, then wait for
# its health check.
start_proc() {
    parse_proc "$1"
    local pid deadline
    if pid=$(live_pid "$P_NAME" "${P_CMD[0]}"); then
        say "$P_NAME already running (pid $pid)"
    elif healthy "$P_URL"; then
        # Something we did not start holds the port (a process run by hand?). A test
        # stack must not quietly lean on someone else's process.
        if [[ ${SVC_STRICT:-0} == 1 ]]; then
            die "$P_NAME: $P_URL is already taken by a process $SVC_OWNER did not start"
        fi
        warn "$P_NAME: $P_URL already answers but was not started by $SVC_OWNER; leaving it alone"
        return 0
    else
        say "starting $P_NAME: ${P_CMD[*]}"
        # Append: a process restarted after a crash keeps the log of its first life.
        # (From the caller's cwd, the repo root: no subshell, so $! is the process.)
        nohup env "${P_ENV[@]}" "$BIN/${P_CMD[0]}" "${P_CMD[@]:1}" \
            >>"$SVC_LOG_DIR/$P_NAME.log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$SVC_PID_DIR/$P_NAME.pid"
    fi
    deadline=$((SECONDS + HEALTH_TIMEOUT))
    until healthy "$P_URL"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$SVC_PID_DIR/$P_NAME.pid"
            tail -n 20 "$SVC_LOG_DIR/$P_NAME.log" >&2 || true
            die "$P_NAME exited during startup (log: $SVC_LOG_DIR/$P_NAME.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$SVC_LOG_DIR/$P_NAME.log" >&2 || true
            die "$P_NAME not healthy at $P_URL after ${HEALTH_TIMEOUT}s (still running as pid $pid; log: $SVC_LOG_DIR/$P_NAME.log)"
        fi
        sleep 0.5
    done
}

# stop_procs — SIGTERM every running process, last started first (the gateways
# before the backends they front), SIGKILL what is left after STOP_TIMEOUT.
stop_procs() {
    local i entry pid pids=() names=()
    for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do
        parse_proc "${PROCS[i]}"
        if pid=$(live_pid "$P_NAME" "${P_CMD[0]}"); then
            say "stopping $P_NAME (pid $pid)"
            # A paused (SIGSTOPped) process would not see the SIGTERM.
            kill -CONT "$pid" 2>/dev/null || true
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$P_NAME")
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) alive
    while :; do
        alive=()
        for i in "${!pids[@]}"; do
            kill -0 "${pids[i]}" 2>/dev/null && alive+=("$i")
        done
        ((${#alive[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            for i in "${alive[@]}"; do
                warn "${names[i]} (pid ${pids[i]}) ignored SIGTERM for ${STOP_TIMEOUT}s; killing"
                kill -KILL "${pids[i]}" 2>/dev/null || true
            done
            break
        fi
        sleep 0.2
    done
    for entry in "${PROCS[@]}"; do
        parse_proc "$entry"
        rm -f "$SVC_PID_DIR/$P_NAME.pid"
    done
}

# kill_proc NAME — SIGKILL (a crash); returns once the process is gone, so a
# restart can bind its port.
kill_proc() {
    local entry pid
    entry=$(proc_entry "$1")
    parse_proc "$entry"
    if pid=$(live_pid "$P_NAME" "${P_CMD[0]}"); then
        kill -KILL "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        say "killed $P_NAME (pid $pid)"
    else
        warn "$P_NAME is not running"
    fi
}

# ---------------------------------------------------------------- the demo set-up

TOKEN_FILE_NAME=operator-token

# HTTP status code of a GET through the gateway with the operator token.
api_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        -H "Authorization: Bearer $(<"$SVC_STATE/$TOKEN_FILE_NAME")" "$GATEWAY$1" || true
}

ensure_token() {
    local file="$SVC_STATE/$TOKEN_FILE_NAME"
    if [[ -s $file && $(api_status /console/api/events) == 200 ]]; then
        say "reusing operator token in $file"
        return
    fi
    say "creating admin operator token"
    local token
    token=$("$BIN/console" token create --role admin --name stack)
    token=${token//[[:space:]]/}
    [[ -n $token ]] || die "'console token create' printed no token"
    (umask 077 && printf '%s\n' "$token" >"$file")
    chmod 600 "$file"
    local code
    code=$(api_status /console/api/events)
    [[ $code == 200 ]] || die "new operator token is rejected by $GATEWAY/console/api/events (HTTP $code)"
}

# A console sign-in for the demo: admin@floodgate.local with a generated password kept
# in $SVC_STATE/admin-password (created once).
ensure_admin_login() {
    local file="$SVC_STATE/admin-password"
    [[ -s $file ]] && return
    local password
    password=$(openssl rand -base64 18)
    if CONSOLE_PASSWORD="$password" "$BIN/console" operator create \
        --email admin@floodgate.local --name "Demo admin" --role admin >/dev/null 2>&1; then
        (umask 077 && printf '%s\n' "$password" >"$file")
        say "console sign-in: admin@floodgate.local (password in $file)"
    else
        warn "could not create the demo console sign-in (it may exist already without $file)"
    fi
}

ensure_demo_event() {
    local code
    code=$(api_status /console/api/events/demo)
    case $code in
        200) say "demo event exists"; return ;;
        404) ;;
        *) die "GET $GATEWAY/console/api/events/demo returned HTTP $code" ;;
    esac
    # A week from now, on the hour, two hours long.
    local now starts ends body resp
    now=$(date -u +%s)
    starts=$(( (now / 3600 + 1) * 3600 + 7 * 86400 ))
    ends=$((starts + 2 * 3600))
    starts=$(date -u -d "@$starts" +%Y-%m-%dT%H:%M:%SZ)
    ends=$(date -u -d "@$ends" +%Y-%m-%dT%H:%M:%SZ)
    body=$(cat <<EOF
{"slug":"demo","title":"Floodgate demo: live on-sale","starts_at":"$starts","ends_at":"$ends","timezone":"Europe/Amsterdam","meeting":{"provider":"jitsi"},"refund_policy":{"refundable_until_hours_before":48},"tiers":[{"code":"early","name":"Early bird","price_cents":1500,"currency":"EUR","capacity":100},{"code":"general","name":"General admission","price_cents":2500,"currency":"EUR","capacity":400}],"queue":{"mode":"on","rate_per_minute":120,"max_active":200}}
EOF
)
    say "creating demo event (starts $starts)"
    resp=$(curl -s --max-time 10 -w '\n%{http_code}' -X POST \
        -H "Authorization: Bearer $(<"$SVC_STATE/$TOKEN_FILE_NAME")" -H 'Content-Type: application/json' \
        --data "$body" "$GATEWAY/console/api/events") || true
    code=${resp##*$'\n'}
    case $code in
        200|201) ;;
        409) say "demo event already exists" ;;
        *) die "creating the demo event failed (HTTP $code): ${resp%$'\n'*}" ;;
    esac
}
