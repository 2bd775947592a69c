#!/bin/sh
# One PLC cycle on one fixture position with mbpoll (a Modbus master we did not
# write), the way docs/plc.md's worked example does it by hand:
#
#   plc_mbpoll.sh PORT POSITION SERIAL CYCLE
#
# heartbeat, serial + recipe id + cycle id, START, wait for BUSY, clear START,
# wait for RESULT_VALID (heartbeat kept moving), read the answer, RESULT_ACK,
# wait for RESULT_VALID to clear, clear RESULT_ACK. Also shows that a write to
# a station -> PLC register is refused. Prints what it saw, one "key value"
# line each; exit 0 when the cycle completed, 1 otherwise.
set -eu
PORT=$1 POS=$2 SERIAL=$3 CYCLE=$4
B=$((100 * POS))
mb() { mbpoll -m tcp -0 -1 -o 2 -a 1 -p "$PORT" "$@"; }
# The values mbpoll printed, one per line ("[ref]: value" lines).
values() { sed -n 's/^\[[0-9]*\]:[[:space:]]*//p'; }
read_regs() { mb -t 4 -r "$1" -c "$2" 127.0.0.1 | values; }
write_regs() { ref=$1; shift; mb -t 4 -r "$ref" 127.0.0.1 "$@" >/dev/null; }
beat=0
heartbeat() { beat=$((beat + 1)); write_regs 0 "$beat"; }

# The 16 characters, two per register, first character in the high byte.
words=""
i=0
while [ $i -lt 16 ]; do
  c1=$(printf '%s' "$SERIAL" | cut -c$((i + 1)))
  c2=$(printf '%s' "$SERIAL" | cut -c$((i + 2)))
  words="$words $(( $(printf '%d' "'$c1") * 256 + $(printf '%d' "'$c2") ))"
  i=$((i + 2))
done

heartbeat
# Station -> PLC registers are read-only: ILLEGAL DATA ADDRESS.
if mb -t 4 -r $((B + 20)) 127.0.0.1 9 >/dev/null 2>&1; then echo "write to B+20 accepted"; exit 1; fi
echo "readonly refused"
# shellcheck disable=SC2086
write_regs $((B + 1)) 1 "$CYCLE" $words
write_regs "$B" 1
n=0
while :; do
  set -- $(read_regs $((B + 20)) 3)
  if [ $(( $2 & 2 )) -ne 0 ] && [ "$3" -eq "$CYCLE" ]; then echo "busy packml $1"; break; fi
  if [ $(( $2 & 4 )) -ne 0 ] && [ "$3" -eq "$CYCLE" ]; then echo "answered at once"; break; fi
  n=$((n + 1)); [ $n -lt 100 ] || { echo "no BUSY"; exit 1; }
  heartbeat
done
write_regs "$B" 0
n=0
while :; do
  heartbeat
  set -- $(read_regs $((B + 20)) 5)
  if [ $(( $2 & 4 )) -ne 0 ] && [ "$3" -eq "$CYCLE" ]; then break; fi
  n=$((n + 1)); [ $n -lt 1500 ] || { echo "no RESULT_VALID"; exit 1; }
  sleep 0.1
done
echo "packml $1"
echo "status $2"
echo "cycle $3"
echo "result $4"
echo "fault $5"
echo "ocv_0p1mv $(mb -t 4:int -B -r $((B + 40)) 127.0.0.1 | values)"
write_regs "$B" 2
set -- $(read_regs $((B + 20)) 2)
echo "after_ack packml $1 status $2"
write_regs "$B" 0
[ $(( $2 & 4 )) -eq 0 ]
