#!/usr/bin/env bash
# fetch_demo.sh -- download the audiocopy demo data from Debian.
#
# The demo needs two folders of 22050 Hz mono 16-bit WAV files:
#
#   wav_licensed/  20 tracks: the catalog the recognizer is built for
#   wav_wrong/     124 other tracks: negatives for training
#
# All of it is freely licensed music shipped inside Debian 12 (bookworm, main)
# packages: game soundtracks as Ogg Vorbis, tracker modules (MOD/XM/S3M/IT,
# rendered by ffmpeg's libopenmpt) and MIDI files (rendered by fluidsynth with
# a General MIDI soundfont). Packages are fetched with `apt-get download`, so
# nothing is installed from them; only the listed files are unpacked.
# Each track is <package>__<track>.wav (the file stem is the track id) and
# lasts at least 30 s. Which tracks form the catalog is fixed by the table
# below, so every run produces the same split.
#
# Also writes MANIFEST-demo.tsv (file, package, version, license, seconds).
#
# Idempotent: tracks already present are kept, and a package whose tracks are
# all present is not downloaded again. Needs Debian (apt-get, dpkg-deb); run
# as root or with sudo so that apt-get can update its lists and install
# ffmpeg, sox, fluidsynth and the soundfont when they are missing.
# About 100 MB is downloaded; a run takes one to two minutes on a fast mirror.
set -euo pipefail

usage() {
  cat <<EOF
usage: $(basename "$0") [-h|--help]

Download freely licensed music from Debian packages and write the demo data:
  \$DEMO_DIR/wav_licensed/   catalog tracks (20)
  \$DEMO_DIR/wav_wrong/      negative tracks (124)
  \$DEMO_DIR/MANIFEST-demo.tsv

Environment:
  DEMO_DIR  base folder (default: <repo>/data/audio)
  JOBS      tracks rendered in parallel (default: number of CPUs)
  SF2       General MIDI soundfont (default: $SF2_DEFAULT)
EOF
}

RATE=22050
MIN_SECONDS=30
MAX_SECONDS=600          # safety cap for tracker modules that never end
SF2_DEFAULT=/usr/share/sounds/sf2/TimGM6mb.sf2
SF2_PACKAGE=timgm6mb-soundfont

case ${1:-} in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${DEMO_DIR:-$REPO/data/audio}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
SF2=${SF2:-$SF2_DEFAULT}
export LC_ALL=C

# ---- what to fetch -----------------------------------------------------------
# package <TAB> license of its music (from the package's copyright file)
LICENSES=$(cat <<'EOF'
biniax2-data	Zlib
bomberclone-data	GPL-2
drascula-music	Drascula-License (BSD-like)
gunroar-data	BSD-2-clause
mu-cade-data	BSD-2-clause
noiz2sa-data	BSD-2-clause
open-invaders-data	GPL-2+
openttd-openmsx	GPL-2
pachi-data	GPL-2+
parsec47-data	BSD-2-clause
pingus-data	GPL-2+
rrootage-data	BSD-2-clause
tecnoballz-data	GPL-3+
titanion-data	BSD-2-clause
torus-trooper-data	BSD-2-clause
tumiki-fighters-data	BSD-2-clause
EOF
)

# set <TAB> package <TAB> file inside the package
#   set L = wav_licensed (the catalog), W = wav_wrong (negatives).
#   The track name is the file name without its extension.
#   Only distinct pieces are listed: variants sharing their audio are left out.
TRACKS=$(cat <<'EOF'
L	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg1.ogg
L	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg3.ogg
L	gunroar-data	usr/share/games/gunroar/sounds/musics/gr1.ogg
L	parsec47-data	usr/share/games/parsec47/sounds/ptn2.ogg
L	torus-trooper-data	usr/share/games/torus-trooper/sounds/musics/tt2.ogg
L	tumiki-fighters-data	usr/share/games/tumiki-fighters/sounds/just_over_the_horizon.ogg
L	drascula-music	usr/share/scummvm/drascula/audio/track5.ogg
L	drascula-music	usr/share/scummvm/drascula/audio/track13.ogg
L	pingus-data	usr/share/games/pingus/data/music/pingus-2.it
L	pingus-data	usr/share/games/pingus/data/music/goin_march.it
L	pingus-data	usr/share/games/pingus/data/music/sorcerer.it
L	tecnoballz-data	usr/share/games/tecnoballz/musics/area2-game.mod
L	tecnoballz-data	usr/share/games/tecnoballz/musics/tecnoballz.mod
L	biniax2-data	usr/share/games/biniax2/music/biniax_common03.it
L	bomberclone-data	usr/share/games/bomberclone/music/slice_me_nice.xm
L	pachi-data	usr/share/pachi/music/menu.s3m
L	open-invaders-data	usr/share/open-invaders/titlesong.mod
L	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/city_blues_redfarn.mid
L	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/flying_scotsman.mid
L	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/harp_harmony.mid
W	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg0.ogg
W	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg00.ogg
W	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg2.ogg
W	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg4.ogg
W	noiz2sa-data	usr/share/games/noiz2sa/sounds/stg5.ogg
W	gunroar-data	usr/share/games/gunroar/sounds/musics/gr0.ogg
W	gunroar-data	usr/share/games/gunroar/sounds/musics/gr2.ogg
W	gunroar-data	usr/share/games/gunroar/sounds/musics/gr3.ogg
W	parsec47-data	usr/share/games/parsec47/sounds/ptn0.ogg
W	parsec47-data	usr/share/games/parsec47/sounds/ptn1.ogg
W	parsec47-data	usr/share/games/parsec47/sounds/ptn3.ogg
W	torus-trooper-data	usr/share/games/torus-trooper/sounds/musics/tt1.ogg
W	torus-trooper-data	usr/share/games/torus-trooper/sounds/musics/tt3.ogg
W	torus-trooper-data	usr/share/games/torus-trooper/sounds/musics/tt4.ogg
W	tumiki-fighters-data	usr/share/games/tumiki-fighters/sounds/battle_over_the_junk_city.ogg
W	tumiki-fighters-data	usr/share/games/tumiki-fighters/sounds/panic_on_meadow.ogg
W	tumiki-fighters-data	usr/share/games/tumiki-fighters/sounds/we_are_tumiki_fighters.ogg
W	mu-cade-data	usr/share/games/mu-cade/sounds/musics/mcd1.ogg
W	mu-cade-data	usr/share/games/mu-cade/sounds/musics/mcd2.ogg
W	mu-cade-data	usr/share/games/mu-cade/sounds/musics/mcd3.ogg
W	mu-cade-data	usr/share/games/mu-cade/sounds/musics/mcd4.ogg
W	rrootage-data	usr/share/games/rrootage/sounds/stg_a.ogg
W	rrootage-data	usr/share/games/rrootage/sounds/stg_b.ogg
W	rrootage-data	usr/share/games/rrootage/sounds/stg_c.ogg
W	titanion-data	usr/share/games/titanion/sounds/musics/ttn1.ogg
W	titanion-data	usr/share/games/titanion/sounds/musics/ttn2.ogg
W	titanion-data	usr/share/games/titanion/sounds/musics/ttn3.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track1.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track2.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track3.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track4.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track6.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track7.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track8.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track9.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track10.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track11.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track14.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track15.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track16.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track18.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track19.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track20.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track21.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track22.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track23.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track24.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track25.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track26.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track27.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track29.ogg
W	drascula-music	usr/share/scummvm/drascula/audio/track31.ogg
W	pingus-data	usr/share/games/pingus/data/music/gd-giirm.s3m
W	pingus-data	usr/share/games/pingus/data/music/gd-matth.it
W	pingus-data	usr/share/games/pingus/data/music/gd-myla.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-1.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-3.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-4.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-5.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-6.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-7.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-8.it
W	pingus-data	usr/share/games/pingus/data/music/pingus-9.it
W	pingus-data	usr/share/games/pingus/data/music/rough_journey.it
W	pingus-data	usr/share/games/pingus/data/music/the_big_march_in_space.it
W	tecnoballz-data	usr/share/games/tecnoballz/musics/area1-game.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/area3-game.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/area4-game.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/area5-game.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/fridge-in-space_from_reg-zbb.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/gardien-go.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/high-score.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/in-game-music-1_reg.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/mon-lapin_reg-zbb.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/over-theme.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/tecno-winn.mod
W	tecnoballz-data	usr/share/games/tecnoballz/musics/termigator_reg-zbb.mod
W	biniax2-data	usr/share/games/biniax2/music/biniax_common00.it
W	biniax2-data	usr/share/games/biniax2/music/biniax_common01.it
W	biniax2-data	usr/share/games/biniax2/music/biniax_common02.it
W	biniax2-data	usr/share/games/biniax2/music/biniax_common04.it
W	biniax2-data	usr/share/games/biniax2/music/biniax_common05.it
W	biniax2-data	usr/share/games/biniax2/music/biniax_common06.it
W	biniax2-data	usr/share/games/biniax2/music/biniax_common07.it
W	bomberclone-data	usr/share/games/bomberclone/music/cerror-bobmberclone.xm
W	bomberclone-data	usr/share/games/bomberclone/music/cerror-bomberclone_numero_2.xm
W	bomberclone-data	usr/share/games/bomberclone/music/cinderella_clown.mod
W	bomberclone-data	usr/share/games/bomberclone/music/mario_is_a_weenie.xm
W	bomberclone-data	usr/share/games/bomberclone/music/zb-tnt.xm
W	pachi-data	usr/share/pachi/music/credits.s3m
W	pachi-data	usr/share/pachi/music/stage1.s3m
W	pachi-data	usr/share/pachi/music/stage3.s3m
W	pachi-data	usr/share/pachi/music/stage4.s3m
W	open-invaders-data	usr/share/open-invaders/endsong.mod
W	open-invaders-data	usr/share/open-invaders/gamesong.mod
W	open-invaders-data	usr/share/open-invaders/hiscore.mod
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/5432gone_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/be_sharp_bw_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/boogi_marabi_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/busy_schedule.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/careless_perc_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/chemistry_lab.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/chuggachugga.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/coconut_run2.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/keep_on_rolling.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/linns_basket.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/midnight_snow_run.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/mighty_giant_run.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/modern_motion.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/moo_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/mosey_along_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/no_work_song_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/relax_song.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/run_for_your_life.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/say_what_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/slow_neasy_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/the_fast_route.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/the_hobo_redfarn.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/train_filled_with_cash.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/ttsong_iii_imuh3.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/ttsong_iv_imuh3.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/tttheme2.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/ultimate_run.mid
W	openttd-openmsx	usr/share/games/openttd/baseset/openmsx/wood_whistles.mid
EOF
)

# ---- helpers -----------------------------------------------------------------
say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

set_dir() { # L|W -> folder name
  case $1 in L) echo wav_licensed ;; W) echo wav_wrong ;; *) die "bad set '$1' in the track table" ;; esac
}

# Print "set <TAB> package <TAB> path <TAB> relative output file" for every track.
track_rows() {
  local set pkg path name
  while IFS=$'\t' read -r set pkg path; do
    name=$(basename "$path"); name=${name%.*}; name=${name// /_}
    printf '%s\t%s\t%s\t%s/%s__%s.wav\n' "$set" "$pkg" "$path" "$(set_dir "$set")" "$pkg" "$name"
  done <<<"$TRACKS"
}

# Rows of track_rows whose output file does not exist yet.
missing_rows() {
  local set pkg path file
  while IFS=$'\t' read -r set pkg path file; do
    [ -f "$BASE/$file" ] || printf '%s\t%s\t%s\t%s\n' "$set" "$pkg" "$path" "$file"
  done <<<"$ROWS"
}

seconds_of() { # duration of a WAV file (any name) in seconds, 0 if unreadable
  ffprobe -v error -f wav -show_entries format=duration -of csv=p=0 "$1" 2>/dev/null || echo 0
}

# Render one track to $BASE/<file>. Writes "ok", "short N" or "fail: why" to $4.
render() { # source-file output-relative-path kind status-file
  local src=$1 out="$BASE/$2" kind=$3 status=$4 part secs
  part="$out.part"
  local errlog="$status.log"
  local to_wav=(-vn -map_metadata -1 -ac 1 -ar "$RATE" -c:a pcm_s16le -bitexact -f wav)
  case $kind in
    mid)
      # fluidsynth renders at RATE in stereo; ffmpeg trims the silence that
      # MIDI files often start and end with, and downmixes.
      local synth="$status.synth.wav"
      if ! fluidsynth -ni -q -g 0.6 -r "$RATE" -T wav -F "$synth" "$SF2" "$src" >"$errlog" 2>&1 \
        || ! ffmpeg -nostdin -v error -y -i "$synth" -t "$MAX_SECONDS" \
               -af 'silenceremove=start_periods=1:start_threshold=-60dB,areverse,silenceremove=start_periods=1:start_threshold=-60dB,areverse' \
               "${to_wav[@]}" "$part" 2>>"$errlog"; then
        echo "fail: $(tail -c 200 "$errlog" | tr '\n' ' ')" >"$status"; rm -f "$part" "$synth"; return 0
      fi
      rm -f "$synth" ;;
    *)
      # ffmpeg decodes Ogg and (through libopenmpt) tracker modules; a few Ogg
      # files have headers it rejects, and sox (libvorbis) reads those.
      if ! ffmpeg -nostdin -v error -y -i "$src" -t "$MAX_SECONDS" "${to_wav[@]}" "$part" 2>"$errlog" \
        && ! sox -R "$src" -t wav -r "$RATE" -c 1 -b 16 -e signed-integer "$part" trim 0 "$MAX_SECONDS" 2>>"$errlog"; then
        echo "fail: $(tail -c 200 "$errlog" | tr '\n' ' ')" >"$status"; rm -f "$part"; return 0
      fi ;;
  esac
  secs=$(seconds_of "$part")
  if awk -v s="$secs" -v m="$MIN_SECONDS" 'BEGIN{exit !(s < m)}'; then
    echo "short $secs" >"$status"; rm -f "$part"; return 0
  fi
  mv -f "$part" "$out"
  echo ok >"$status"
}

write_manifest() {
  local mf="$BASE/MANIFEST-demo.tsv" set pkg path file ver lic n=0
  local versions="$WORK/versions"
  # versions: those downloaded now, else the previous manifest, else apt's candidate
  touch "$versions"
  [ -f "$mf" ] && awk -F'\t' 'NR>1{print $2"\t"$3}' "$mf" >>"$versions"
  {
    printf 'file\tpackage\tversion\tlicense\tseconds\n'
    while IFS=$'\t' read -r set pkg path file; do
      [ -f "$BASE/$file" ] || continue
      ver=$(awk -F'\t' -v p="$pkg" '$1==p{print $2; exit}' "$versions")
      [ -n "$ver" ] || ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2; exit}')
      lic=$(awk -F'\t' -v p="$pkg" '$1==p{print $2; exit}' <<<"$LICENSES")
      printf '%s\t%s\t%s\t%s\t%.1f\n' "$file" "$pkg" "${ver:-unknown}" "$lic" "$(seconds_of "$BASE/$file")"
      n=$((n + 1))
    done <<<"$ROWS"
  } >"$mf.part"
  mv -f "$mf.part" "$mf"
  say "manifest: $mf ($n tracks)"
}

# ---- plan --------------------------------------------------------------------
command -v dpkg-deb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  || die "apt-get and dpkg-deb not found: this script needs Debian 12 or a derivative"
mkdir -p "$BASE/wav_licensed" "$BASE/wav_wrong"
BASE=$(cd "$BASE" && pwd)
rm -f "$BASE"/wav_licensed/*.part "$BASE"/wav_wrong/*.part   # left by an interrupted run

ROWS=$(track_rows)
TODO=$(missing_rows)
n_tracks=$(wc -l <<<"$ROWS")
n_todo=$(grep -c . <<<"$TODO" || true)
packages=$(cut -f2 <<<"$ROWS" | awk '!seen[$0]++')
n_pkgs=$(wc -l <<<"$packages")
# every package in the track table needs a license line
for p in $packages; do grep -q "^$p"$'\t' <<<"$LICENSES" || die "no license listed for $p"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fetch_demo.XXXXXX")
cleanup() {
  rm -rf "$WORK"
  rm -f "$BASE"/wav_licensed/*.part "$BASE"/wav_wrong/*.part
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "demo data: $n_tracks tracks from $n_pkgs Debian packages -> $BASE"
if [ "$n_todo" -eq 0 ]; then
  say "all tracks already present"
  write_manifest
  exit 0
fi
say "$n_todo tracks to make"

# ---- tools -------------------------------------------------------------------
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=none; fi
fi
apt_root() { # run apt-get as root, or fail
  [ "$SUDO" != none ] || return 1
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v sox >/dev/null 2>&1 || need+=(sox libsox-fmt-base)
if cut -f3 <<<"$TODO" | grep -q '\.mid$'; then
  command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
  [ -f "$SF2" ] || need+=("$SF2_PACKAGE")
fi

say "updating apt package lists"
if ! apt_root update -q >"$WORK/apt.log" 2>&1; then
  if [ "$SUDO" = none ]; then
    warn "not root and no sudo: using apt's current package lists"
  else
    cat "$WORK/apt.log" >&2; die "apt-get update failed"
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing: ${need[*]}"
  [ "$SUDO" != none ] || die "missing tools (${need[*]}); run as root or install them first"
  apt_root install -y -q --no-install-recommends "${need[@]}" >"$WORK/apt.log" 2>&1 \
    || { tail -n 20 "$WORK/apt.log" >&2; die "apt-get install ${need[*]} failed"; }
fi
if cut -f3 <<<"$TODO" | grep -q '\.mid$'; then
  [ -f "$SF2" ] || die "soundfont $SF2 not found (set SF2=/path/to/file.sf2)"
fi

# ---- fetch and render, one package at a time ---------------------------------
DEBS="$WORK/debs"; mkdir -p "$DEBS"; chmod 777 "$DEBS"   # apt's _apt user writes here
: >"$WORK/versions"
made=0 failed=0 i=0 t_start=$SECONDS problems=()
for pkg in $packages; do
  i=$((i + 1))
  todo=$(awk -F'\t' -v p="$pkg" '$2==p' <<<"$TODO")
  n_pkg=$(awk -F'\t' -v p="$pkg" '$2==p' <<<"$ROWS" | wc -l)
  if [ -z "$todo" ]; then
    say "[$i/$n_pkgs] $pkg: all $n_pkg tracks present"
    continue
  fi
  t0=$SECONDS
  printf '[%d/%d] %s: downloading ... ' "$i" "$n_pkgs" "$pkg"
  if ! (cd "$DEBS" && apt-get download -q "$pkg") >"$WORK/dl.log" 2>&1; then
    say "FAILED"; sed 's/^/    /' "$WORK/dl.log" | tail -n 3
    failed=$((failed + $(wc -l <<<"$todo"))); continue
  fi
  deb=$(ls "$DEBS/${pkg}"_*.deb | head -n 1)
  ver=$(dpkg-deb -f "$deb" Version)
  printf '%s\t%s\n' "$pkg" "$ver" >>"$WORK/versions"
  printf '%s (%s MB), ' "$ver" "$(( $(stat -c %s "$deb") / 1000000 ))"

  # unpack only the wanted files (data tar members start with ./)
  tree="$WORK/tree"; rm -rf "$tree"; mkdir -p "$tree"
  cut -f3 <<<"$todo" | sed 's|^|./|' >"$WORK/members"
  if ! dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree" --no-wildcards -T "$WORK/members" 2>"$WORK/tar.log"; then
    say "UNPACK FAILED"; sed 's/^/    /' "$WORK/tar.log" | tail -n 3
    failed=$((failed + $(wc -l <<<"$todo"))); rm -rf "$tree" "$deb"; continue
  fi
  rm -f "$deb"

  # render JOBS tracks at a time
  status="$WORK/status"; rm -rf "$status"; mkdir -p "$status"; k=0
  while IFS=$'\t' read -r set p path file; do
    k=$((k + 1))
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    kind=other; case $path in *.mid|*.midi) kind=mid ;; esac
    render "$tree/$path" "$file" "$kind" "$status/$k" </dev/null &
  done <<<"$todo"
  wait || true

  ok=0 bad=0 k=0
  while IFS=$'\t' read -r set p path file; do
    k=$((k + 1))
    st=$(cat "$status/$k" 2>/dev/null || echo "fail: no status")
    if [ "$st" = ok ]; then ok=$((ok + 1)); else bad=$((bad + 1)); problems+=("    $file: $st"); fi
  done <<<"$todo"
  made=$((made + ok)); failed=$((failed + bad))
  say "$ok made, $bad failed, $((SECONDS - t0)) s"
  if [ "$bad" -gt 0 ]; then printf '%s\n' "${problems[@]}"; fi
  problems=()
  rm -rf "$tree"
done

write_manifest
n_lic=$(find "$BASE/wav_licensed" -maxdepth 1 -name '*.wav' | wc -l)
n_neg=$(find "$BASE/wav_wrong" -maxdepth 1 -name '*.wav' | wc -l)
say "made $made tracks in $((SECONDS - t_start)) s; wav_licensed: $n_lic files, wav_wrong: $n_neg files"
if [ "$failed" -gt 0 ]; then
  die "$failed tracks could not be made (see above); rerun to retry them"
fi
