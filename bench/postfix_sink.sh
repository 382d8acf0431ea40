#!/bin/sh
# Configure this machine's Postfix as a discarding SMTP sink for bench/bench_smtp.py --postfix 2525.
#
#   bench/postfix_sink.sh         write the config, then start Postfix (or reload it if running),
#                                 its queue on disk (the benchmark's headline setting)
#   bench/postfix_sink.sh tmpfs   the same with the queue on a tmpfs mounted over /var/spool/postfix
#                                 (no disk, no fsync wait: a comparison row only, never the headline)
#   bench/postfix_sink.sh stop    stop Postfix (and unmount that tmpfs if it is mounted)
#
# Run as root on Debian (tested on Debian 12, Postfix 3.7), after
#   DEBIAN_FRONTEND=noninteractive apt-get install -y postfix    ("No configuration")
# Idempotent: it writes the same two files every time and starts or reloads Postfix.
#
# What it changes on the machine:
#   - /etc/postfix/main.cf and /etc/postfix/master.cf are REPLACED by the files below. Whatever was
#     there before is kept once, as main.cf.pre-bench and master.cf.pre-bench (never overwritten).
#   - Postfix is started (or reloaded) with `postfix start` / `postfix reload`, not through systemd.
#   - It listens on 127.0.0.1:2525 only (IPv4, loopback; nothing on port 25).
#   - It logs to /var/log/postfix-bench.log (through its own postlogd), the file bench_smtp.py's
#     --postfix-log reads by default. The file is appended to, never rotated.
#   - Its queue stays where Debian puts it, /var/spool/postfix, on disk: every message is written
#     and fsynced there before the 250 reply, as a real relay does. Only with `tmpfs`: a 512 MB
#     tmpfs is mounted over /var/spool/postfix (its contents copied in first; Postfix stopped
#     meanwhile); `stop` or a run without `tmpfs` unmounts it again, back to the disk queue.
#
# It never delivers anywhere. Every transport (default, local, relay, virtual) is discard:, which
# logs "status=sent" and drops the message. Beyond that, master.cf has no smtp, relay, lmtp, local,
# virtual or pipe service at all: if anything were ever routed to one, the queue manager could not
# reach it and would only defer the message. relayhost is empty; the only listener is loopback.
# It accepts any recipient from 127.0.0.0/8 (mynetworks) and refuses relaying to anyone else.
#
# Settings chosen so that Postfix is a fair sink for several connections at once:
#   in_flow_delay = 0          the default (1s) makes smtpd pause before each message whenever the
#                              queue manager has fallen behind the arrival rate: a throttle, not a
#                              cost of receiving. (Measured on 2026-12-02: no difference here, the
#                              discarding queue manager never fell behind; kept at 0 so it cannot.)
#   smtpd process limit 20     (master.cf) room for more than the 4 connections at once.
#   discard concurrency 20     (default_destination_concurrency_limit, Postfix's default, said
#                              explicitly) so up to 20 discard processes keep up with arrivals.
#   smtpd_peername_lookup = no no reverse DNS per connection (only 4-5 per run; it matters little).
#   chroot off everywhere      (master.cf) so no files need copying into /var/spool/postfix.
set -eu

LOG=/var/log/postfix-bench.log
ETC=/etc/postfix

if [ "$(id -u)" != 0 ]; then
    echo "postfix_sink.sh: run as root" >&2
    exit 1
fi
command -v postfix >/dev/null || {
    echo "postfix_sink.sh: install Postfix first: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix" >&2
    exit 1
}

running() { postfix status >/dev/null 2>&1; }

SPOOL=/var/spool/postfix
on_tmpfs() { [ "$(findmnt -n -o FSTYPE --mountpoint "$SPOOL" 2>/dev/null)" = tmpfs ]; }
disk_queue() {
    if on_tmpfs; then
        if running; then postfix stop; fi
        umount "$SPOOL"
        echo "postfix_sink.sh: queue back on disk"
    fi
}
tmpfs_queue() {
    if ! on_tmpfs; then
        if running; then postfix stop; fi
        copy=$(mktemp -d)
        cp -a "$SPOOL/." "$copy/"
        mount -t tmpfs -o size=512m,mode=0755 tmpfs "$SPOOL"
        cp -a "$copy/." "$SPOOL/"
        rm -rf "$copy"
        echo "postfix_sink.sh: queue on tmpfs"
    fi
}

case "${1:-}" in
stop)
    if running; then postfix stop; else echo "postfix_sink.sh: Postfix is not running"; fi
    disk_queue
    exit 0
    ;;
tmpfs) tmpfs_queue ;;
"") disk_queue ;;
*)
    echo "usage: $0 [tmpfs|stop]" >&2
    exit 2
    ;;
esac

for f in main.cf master.cf; do
    if [ -e "$ETC/$f" ] && [ ! -e "$ETC/$f.pre-bench" ]; then cp -p "$ETC/$f" "$ETC/$f.pre-bench"; fi
done
before=$(cat "$ETC/main.cf" "$ETC/master.cf" 2>/dev/null | md5sum)

cat >"$ETC/main.cf.new" <<'EOF'
# Written by bench/postfix_sink.sh: a discarding benchmark sink on 127.0.0.1:2525. Do not edit here.
compatibility_level = 3.6
myhostname = sink.bench.localdomain
mydomain = bench.localdomain
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
relayhost =
transport_maps =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
readme_directory = no
smtputf8_enable = no

# Accept anything from loopback, relay for no one else.
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP bench sink

# Discard everything, whatever address class it falls in.
default_transport = discard:bench
local_transport = discard:bench
relay_transport = discard:bench
virtual_transport = discard:bench

# A fair sink for several connections: no inflow throttle; discarding never backs off.
in_flow_delay = 0
default_destination_concurrency_limit = 20

maillog_file = /var/log/postfix-bench.log
EOF

cat >"$ETC/master.cf.new" <<'EOF'
# Written by bench/postfix_sink.sh. Only what a discarding sink needs: no smtp, relay, lmtp,
# local, virtual or pipe delivery service exists, so nothing can leave this machine.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:2525 inet n   -       n       -       20      smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
mv "$ETC/main.cf.new" "$ETC/main.cf"
mv "$ETC/master.cf.new" "$ETC/master.cf"
after=$(cat "$ETC/main.cf" "$ETC/master.cf" | md5sum)

touch "$LOG"
postfix check
if ! running; then
    postfix start
elif [ "$before" != "$after" ]; then
    # inet_interfaces and listeners change only on a restart, not a reload.
    postfix stop
    postfix start
else
    postfix reload
fi
if on_tmpfs; then where="tmpfs"; else where="disk"; fi
echo "postfix_sink.sh: Postfix discarding on 127.0.0.1:2525, queue on $where, logging to $LOG"
