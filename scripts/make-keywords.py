#!/usr/bin/env python3
"""Make a keyword-spotting set of one-second clips with the speech synthesisers Debian ships.

Why: the Speech Commands data set cannot be downloaded on a machine without internet, but keyword
spotting from raw audio still needs a set in its layout to develop and test against. This script
makes one from espeak-ng, flite and festival, varied by voice, speed, pitch, sox pitch/tempo
perturbation, loudness, reverb and EQ, with one synthesiser held out of training entirely so that
accuracy on it measures how far a network generalises beyond the voices it was trained on.
Synthetic speech is no substitute for people speaking; the held-out synthesiser is the honest
figure, the validation and testing lists (other settings of the trained synthesisers) flatter.

What it makes (the Speech Commands layout; a loader written for it reads this set):

    OUT/<word>/<speaker>_nohash_g<gain>_<index>.wav   16 kHz, 16-bit, mono PCM WAV, exactly one
                                                      second (16,000 samples), the speech roughly
                                                      centred and padded with digital silence
    OUT/_background_noise_/*.wav      60 s each: white, pink and brown noise, a 50 Hz mains hum, a
                                      fan-like rumble (sox synth; -20 to -30 dBFS peak,
                                      -31 to -41 dBFS RMS)
    OUT/validation_list.txt           word/file.wav lines, as Speech Commands has them
    OUT/testing_list.txt
    OUT/holdout_list.txt              every clip of the held-out synthesiser, and nothing else
    OUT/training_list.txt             everything else (Speech Commands has no such file: a loader
                                      that takes "not in validation or testing" as training must
                                      also leave out holdout_list.txt, else it trains on the
                                      held-out synthesiser)
    OUT/clips.tsv                     one line per clip: its split and every setting it was made
                                      with, and its peak and RMS level
    OUT/manifest.json, OUT/README.txt how it was made: tool versions, seed, voices, settings,
                                      counts per word and split, clips dropped

<speaker> names the synthesiser, voice and speaker-level settings, e.g.
espeak-en-us+f3_s160_p45_c+100 (espeak-ng voice en-us, variant f3, -s 160 words a minute, -p 45,
sox pitch shift +100 cents), flite-slt_s110_p95_c-50 (duration stretch 1.10, f0 shift 0.95),
festival-kal-diphone_s90_p130_c+0 (Duration_Stretch 0.90, target f0 mean 130 Hz). g<gain> is the
clip's peak level in dBFS (-30 to -1) and <index> the speaker's number. Speaker k of each
synthesiser says every keyword (k < --per-word) and every unknown word (k < --unknown-per-word);
per clip it draws an ending (none . ! ?), a tempo jitter (0.92-1.08), the peak level, and on some
clips reverb (25 %) or a high-pass, low-pass or peaking EQ (30 %).

Splits: as in Speech Commands, a clip's split is decided by the SHA-1 of the part of its name
before "_nohash_" (Speech Commands' which_set(), with --validation-percent and --testing-percent,
default 10 each), so one speaker (voice + settings) is never in two splits, and the lists follow
from the names alone. The held-out synthesiser (--holdout-synth, default festival, or flite when
festival is not among --synths; "none" for none) is in none of these: its clips are listed in
holdout_list.txt only.

The speech is found in the dry signal (before reverb): the 10 ms frames within 40 dB of the
loudest. Speech longer than 0.96 s is sped up with sox tempo until it fits (nothing is cut off a
word; a reverb tail is cut at the end of the second). A clip whose speech is empty or shorter than
60 ms, or still does not fit, or that sox clips, is tried again with the next per-clip draw
(attempt 1, 2); if all fail, the clip is dropped and listed in the manifest.

Deterministic: every draw comes from random.Random seeded by (--seed, synthesiser, speaker, word,
attempt), sox runs with -R (repeatable) and no dither, and the clip's level and placement are
computed here, so the same command with the same tool versions gives the same bytes (--check
verifies it). Resumable: each clip is written to a temporary name and renamed, existing complete
clips are kept, so an interrupted run continues where it stopped when given the same command;
--overwrite starts over. A non-empty OUT that this script did not make is refused; one made with
other settings is refused unless --overwrite.

Time: the default (10 keywords x 100 speakers and 20 unknown words x 50 speakers, for each of
three synthesisers: 6,000 clips, 195 MB) takes about 10 minutes of CPU (570-610 s; festival, about
0.23 s a clip, is most of it), so about 5 minutes with --jobs 2 on an idle 2-core machine; on a
2-core 2.1 GHz Xeon shared with other work it took 10.3 minutes (and 21 under a load of 12).

Needs Python 3 (standard library only) and, on Debian/Ubuntu:
    apt-get install espeak-ng flite festival festvox-kallpc16k sox

    python3 scripts/make-keywords.py --out data/keywords            # the default set
    python3 scripts/make-keywords.py --out /tmp/kw --words yes,no --unknown-words cat \\
        --per-word 4 --synths espeak,flite                          # small; flite held out
    python3 scripts/make-keywords.py --check                        # the self-test
"""

import argparse
import array
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROGRAM = "make-keywords.py"
GENERATOR_VERSION = 1  # changes whenever the same settings would give other bytes
MARKER = ".make-keywords.json"

KEYWORDS = "yes no up down left right on off stop go".split()
UNKNOWN_WORDS = ("bed bird cat dog eight five four happy house marvin nine one seven sheila six "
                 "three tree two wow zero").split()
SYNTHS = ("espeak", "flite", "festival")
# Which command each synthesiser needs, and the Debian packages that provide it.
TOOLS = {
    "espeak": ("espeak-ng", "espeak-ng"),
    "flite": ("flite", "flite"),
    "festival": ("text2wave", "festival festvox-kallpc16k"),
    "sox": ("sox", "sox"),
}

RATE = 16000
SAMPLES = 16000
FRAME = 160  # 10 ms, for finding the speech
MAX_SPEECH = 15360  # 0.96 s: longer speech is sped up to fit
MIN_SPEECH = 960  # 60 ms: shorter speech counts as empty
ATTEMPTS = 3
NOISE_SECONDS = 60
# Speech Commands' input_data.py
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1

# espeak-ng voices (English only; the mbrola ones need mbrola) and variants, kept if installed.
ESPEAK_VOICES = ["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ([""] + [f"m{i}" for i in range(1, 9)] + [f"f{i}" for i in range(1, 6)]
                   + ["croak", "whisper", "whisperf", "klatt", "klatt2", "klatt3", "klatt4",
                      "adam", "Andy", "Annie", "aunty", "belinda", "benjamin", "caleb", "david",
                      "ed", "edward", "grandma", "grandpa", "john", "linda", "max", "norbert",
                      "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac"])
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]  # not awb_time: a limited-domain voice
FLITE_NO_F0_SHIFT = {"rms"}  # f0_shift has no effect on it
FESTIVAL_VOICE = "kal-diphone"  # text2wave's default voice, voice_kal_diphone


class SetError(Exception):
    """A problem the user can fix; the message says what."""


# ---------------------------------------------------------------------------------------------
# tools


def tool_path(name):
    return shutil.which(name)


def run_tool(args, stdin=None, timeout=120):
    """Run a command; (returncode, stdout, stderr) as text."""
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired:
        return 124, "", f"{args[0]}: no answer in {timeout} s"
    except OSError as error:
        return 127, "", f"{args[0]}: {error.strerror or error}"
    if done.returncode in (-signal.SIGINT, -signal.SIGTERM):
        raise KeyboardInterrupt  # Ctrl-C reached the tool first: stop, not a tool failure
    return done.returncode, done.stdout, done.stderr


def check_tools(synths):
    """Every needed command exists; else a SetError naming the Debian packages."""
    missing = []
    for name in list(synths) + ["sox"]:
        command, packages = TOOLS[name]
        if tool_path(command) is None:
            missing.append((name, command, packages))
    if missing:
        lines = [f"  {command}{'' if command == name else f' (for {name})'}: Debian package"
                 f"{'s' if ' ' in packages else ''} {packages}"
                 for name, command, packages in missing]
        packages = " ".join(p for _, _, p in missing)
        hint = ""
        if any(name in SYNTHS for name, _, _ in missing):
            hint = ("\nor leave the missing synthesisers out with --synths (two or more to hold "
                    "one out)")
        raise SetError("missing tools:\n" + "\n".join(lines)
                       + f"\ninstall them (as root): apt-get install {packages}{hint}")


def tool_versions(synths):
    versions = {"python": sys.version.split()[0]}
    commands = {"espeak": ["espeak-ng", "--version"], "flite": ["flite", "--version"],
                "festival": ["festival", "--version"], "sox": ["sox", "--version"]}
    for name in list(synths) + ["sox"]:
        if name == "festival" and tool_path("festival") is None:
            versions[name] = "unknown (no festival command beside text2wave)"
            continue
        rc, out, err = run_tool(commands[name])
        text = " ".join((out + err).split())
        if name == "flite":
            match = re.search(r"version: (\S+)", text)
            text = match.group(1) if match else text
        elif name == "sox":
            text = text.replace("sox: ", "")
        elif name == "espeak":
            text = text.split(" Data at:")[0]
        versions[name] = text
    return versions


def available_voices(synths):
    """The voices of each synthesiser this script uses, as installed."""
    voices = {}
    if "espeak" in synths:
        rc, out, err = run_tool(["espeak-ng", "--voices=en"])
        languages = {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
        rc, out2, err2 = run_tool(["espeak-ng", "--voices=variant"])
        variants = {line.split()[4].split("/", 1)[1] for line in out2.splitlines()[1:]
                    if len(line.split()) > 4 and "/" in line.split()[4]}
        base = [v for v in ESPEAK_VOICES if v in languages]
        if not base:
            raise SetError(f"espeak-ng has none of the English voices {' '.join(ESPEAK_VOICES)} "
                           f"(espeak-ng --voices=en: {(out + err).strip()[:200]})")
        voices["espeak"] = {"voices": base,
                            "variants": [v for v in ESPEAK_VARIANTS if v == "" or v in variants]}
    if "flite" in synths:
        rc, out, err = run_tool(["flite", "-lv"])
        listed = set((out + err).replace("Voices available:", "").split())
        base = [v for v in FLITE_VOICES if v in listed]
        if not base:
            raise SetError(f"flite has none of the voices {' '.join(FLITE_VOICES)} "
                           f"(flite -lv: {(out + err).strip()[:200]})")
        voices["flite"] = {"voices": base}
    if "festival" in synths:
        with tempfile.TemporaryDirectory(prefix="make-keywords-") as tmp:
            text = Path(tmp, "t.txt")
            text.write_text("yes\n")
            rc, out, err = run_tool(["text2wave", "-o", str(Path(tmp, "t.wav")), str(text)])
            if rc != 0 or not Path(tmp, "t.wav").is_file():
                raise SetError("festival's text2wave cannot speak (a voice missing? "
                               "apt-get install festvox-kallpc16k): "
                               + " ".join((out + err).split())[:300])
        voices["festival"] = {"voices": [FESTIVAL_VOICE]}
    return voices


# ---------------------------------------------------------------------------------------------
# the plan: every clip and its settings, from the seed alone


def speaker_settings(seed, synth, k, voices):
    """Speaker k of a synthesiser: voice and speaker-level settings, and its name."""
    rng = random.Random(f"{seed}/{synth}/speaker/{k}")
    cents = rng.randrange(-300, 301, 50)
    if synth == "espeak":
        voice = rng.choice(voices["espeak"]["voices"])
        variant = rng.choice(voices["espeak"]["variants"])
        speed = rng.randrange(120, 221, 5)  # words a minute (espeak-ng's default 175)
        pitch = rng.randrange(20, 81, 5)  # 0-99, default 50
        full = voice + ("+" + variant if variant else "")
        spk = {"synth": synth, "voice": full, "speed": speed, "pitch": pitch, "cents": cents}
    elif synth == "flite":
        voice = rng.choice(voices["flite"]["voices"])
        speed = rng.randrange(80, 131, 5)  # duration_stretch x 100
        pitch = 100 if voice in FLITE_NO_F0_SHIFT else rng.randrange(80, 126, 5)  # f0_shift x 100
        spk = {"synth": synth, "voice": voice, "speed": speed, "pitch": pitch, "cents": cents}
    else:
        speed = rng.randrange(80, 131, 5)  # Duration_Stretch x 100
        pitch = rng.randrange(80, 161, 10)  # target f0 mean, Hz (voice default 105)
        spk = {"synth": synth, "voice": FESTIVAL_VOICE, "speed": speed, "pitch": pitch,
               "cents": cents}
    spk["name"] = (f"{synth}-{spk['voice']}_s{spk['speed']}_p{spk['pitch']}_c{cents:+d}")
    return spk


def clip_settings(seed, spk_index, spk, word, attempt):
    """The per-clip draws of one attempt at one word by one speaker."""
    rng = random.Random(f"{seed}/{spk['synth']}/clip/{spk_index}/{word}/{attempt}")
    ending = rng.choice(["", "", ".", "!", "?"])
    tempo = rng.randrange(92, 109, 2) / 100
    gain = rng.randrange(-30, 0)
    reverb = None
    if rng.random() < 0.25:
        reverb = [rng.randrange(10, 51, 5), 50, rng.randrange(20, 81, 10)]
    eq = None
    if rng.random() < 0.30:
        kind = rng.choice(["highpass", "lowpass", "equalizer"])
        if kind == "highpass":
            eq = ["highpass", rng.randrange(100, 401, 50)]
        elif kind == "lowpass":
            eq = ["lowpass", rng.randrange(2500, 6001, 500)]
        else:
            eq = ["equalizer", rng.randrange(300, 4001, 100), "1q", rng.choice([-6, -3, 3, 6])]
    offset = rng.uniform(-1.0, 1.0)  # fraction of the room on each side of the centred speech
    return {"text": word + ending, "tempo": tempo, "gain": gain, "reverb": reverb, "eq": eq,
            "offset": offset, "attempt": attempt}


def file_name(spk, k, clip):
    return f"{spk['name']}_nohash_g{clip['gain']}_{k:04d}.wav"


def which_set(name, validation_percent, testing_percent):
    """Speech Commands' which_set(): the split of a file from the part of its name before
    _nohash_."""
    hash_name = re.sub(r"_nohash_.*$", "", os.path.basename(name))
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = ((int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1))
                  * (100.0 / MAX_NUM_WAVS_PER_CLASS))
    if percentage < validation_percent:
        return "validation"
    if percentage < validation_percent + testing_percent:
        return "testing"
    return "training"


class Slot:
    """One clip to make: a word said by speaker k of a synthesiser."""

    def __init__(self, word, k, spk, seed):
        self.word, self.k, self.spk = word, k, spk
        self.attempts = [clip_settings(seed, k, spk, word, a) for a in range(ATTEMPTS)]
        self.names = [file_name(spk, k, c) for c in self.attempts]


def make_plan(args, voices):
    speakers = {s: [speaker_settings(args.seed, s, k, voices)
                    for k in range(max(args.per_word, args.unknown_per_word))]
                for s in args.synths}
    plan = []  # (word, [Slot])
    for word in args.words + args.unknown_words:
        count = args.per_word if word in args.words else args.unknown_per_word
        plan.append((word, [Slot(word, k, speakers[s][k], args.seed)
                            for s in args.synths for k in range(count)]))
    return plan, speakers


# ---------------------------------------------------------------------------------------------
# one clip


def synthesise(spk, text, raw, workdir):
    text_file = workdir / "text.txt"
    text_file.write_text(text + "\n")
    if spk["synth"] == "espeak":
        command = ["espeak-ng", "-v", spk["voice"], "-s", str(spk["speed"]), "-p",
                   str(spk["pitch"]), "-w", str(raw), "-f", str(text_file)]
    elif spk["synth"] == "flite":
        command = ["flite", "-voice", spk["voice"], "--setf",
                   f"duration_stretch={spk['speed'] / 100:.2f}", "--setf",
                   f"f0_shift={spk['pitch'] / 100:.2f}", "-f", str(text_file), "-o", str(raw)]
    else:
        mean = spk["pitch"]
        command = ["text2wave", "-o", str(raw),
                   "-eval", f"(Parameter.set 'Duration_Stretch {spk['speed'] / 100:.2f})",
                   "-eval", (f"(set! int_lr_params '((target_f0_mean {mean}) (target_f0_std "
                             f"{round(mean * 14 / 105)}) (model_f0_mean 170) (model_f0_std 34)))"),
                   str(text_file)]
    rc, out, err = run_tool(command)
    if rc != 0 or not raw.is_file():
        raise SetError(f"{' '.join(command)}: failed ({rc}): {' '.join((out + err).split())[:300]}")


def perturb(spk, clip, raw, processed, extra_tempo, reverb):
    """sox: 16 kHz mono 32-bit raw samples, pitch shift, tempo, EQ, and the reverb if `reverb`;
    10 dB of headroom. False when sox clipped it all the same."""
    effects = ["remix", "-", "gain", "-10", "rate", "-v", str(RATE)]
    if spk["cents"]:
        effects += ["pitch", str(spk["cents"])]
    tempo = clip["tempo"] * extra_tempo
    if abs(tempo - 1) > 1e-9:
        effects += ["tempo", "-s", f"{tempo:.4f}"]
    if clip["eq"]:
        effects += [str(x) for x in clip["eq"]]
    effects += ["pad", "0.05", "0.6"]
    if reverb:
        effects += ["reverb"] + [str(x) for x in clip["reverb"]]
    command = ["sox", "-R", "-D", "-V2", str(raw), "-t", "raw", "-r", str(RATE), "-c", "1", "-b",
               "32", "-e", "signed-integer", "-L", str(processed)] + effects
    rc, out, err = run_tool(command)
    if rc != 0:
        raise SetError(f"{' '.join(command)}: failed ({rc}): {' '.join((out + err).split())[:300]}")
    return "clipped" not in err


def read_samples(path):
    """The samples of a 16-bit WAV, or of raw 32-bit little-endian samples (NAME.raw)."""
    if path.suffix == ".raw":
        samples = array.array("i", path.read_bytes())
    else:
        with wave.open(str(path), "rb") as w:
            samples = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def speech_extent(samples):
    """(first, end) sample of the speech: the 10 ms frames within 40 dB of the loudest one."""
    energies = []
    for start in range(0, len(samples), FRAME):
        frame = samples[start:start + FRAME]
        energies.append(sum(x * x for x in frame) / max(1, len(frame)))
    loudest = max(energies, default=0)
    if loudest <= 0:
        return None
    threshold = loudest * 1e-4
    loud = [i for i, e in enumerate(energies) if e >= threshold]
    return loud[0] * FRAME, min(len(samples), (loud[-1] + 1) * FRAME)


def write_wav(path, samples):
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data.tobytes())


def make_clip(spk, clip, target, workdir):
    """Make one clip into `target`; None when done, else why it failed."""
    raw, processed = workdir / "raw.wav", workdir / "processed.raw"
    for path in (raw, processed):
        if path.exists():
            path.unlink()
    synthesise(spk, clip["text"], raw, workdir)
    extra_tempo = 1.0
    for _ in range(4):
        # The speech is found in the dry signal: a reverb tail is not speech, and is cut off at
        # the end of the second like any other sound.
        if not perturb(spk, clip, raw, processed, extra_tempo, reverb=False):
            return "sox clipped it"
        samples = read_samples(processed)
        extent = speech_extent(samples)
        if extent is None or extent[1] - extent[0] < MIN_SPEECH:
            return "no speech"
        length = extent[1] - extent[0]
        if length <= MAX_SPEECH:
            break
        extra_tempo *= length / (MAX_SPEECH - 2 * FRAME)
    else:
        return f"speech of {length / RATE:.2f} s does not fit"
    if clip["reverb"]:
        if not perturb(spk, clip, raw, processed, extra_tempo, reverb=True):
            return "sox clipped it"
        samples = read_samples(processed)
    first, end = extent
    room = SAMPLES - length
    start = first - room // 2 + int(round(clip["offset"] * room / 4))
    start = max(end - SAMPLES, min(first, start))
    window = [samples[i] if 0 <= i < len(samples) else 0 for i in range(start, start + SAMPLES)]
    peak = max(abs(x) for x in window)
    if peak == 0:
        return "no speech"
    scale = 32767 * 10 ** (clip["gain"] / 20) / peak
    out = [max(-32768, min(32767, int(round(x * scale)))) for x in window]
    tmp = target.with_name("." + target.name + ".tmp")
    write_wav(tmp, out)
    os.replace(tmp, target)
    return None


def clip_is_complete(path):
    try:
        with wave.open(str(path), "rb") as w:
            return (w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == RATE
                    and w.getnframes() == SAMPLES and w.getcomptype() == "NONE"
                    and path.stat().st_size == 44 + 2 * SAMPLES)
    except (OSError, EOFError, wave.Error):
        return False


def levels(path):
    """(peak, rms) in dBFS of a 16-bit clip."""
    samples = read_samples(path)
    peak = max(abs(x) for x in samples)
    rms = math.sqrt(sum(x * x for x in samples) / len(samples))
    db = lambda v: round(20 * math.log10(v / 32768), 1) if v > 0 else -math.inf
    return db(peak), db(rms)


def do_slot(out, slot):
    """Make (or keep) one slot's clip: (attempt used or None, kept?, reason for a drop)."""
    directory = out / slot.word
    for a, name in enumerate(slot.names):
        if clip_is_complete(directory / name):
            return a, True, None
    reasons = []
    with tempfile.TemporaryDirectory(prefix="make-keywords-") as tmp:
        for a, name in enumerate(slot.names):
            reason = make_clip(slot.spk, slot.attempts[a], directory / name, Path(tmp))
            if reason is None:
                return a, False, None
            reasons.append(reason)
    return None, False, "; ".join(reasons)


# ---------------------------------------------------------------------------------------------
# the set


def settings_of(args):
    return {"generator_version": GENERATOR_VERSION, "seed": args.seed, "words": args.words,
            "unknown_words": args.unknown_words, "synths": args.synths,
            "holdout_synth": args.holdout_synth, "per_word": args.per_word,
            "unknown_per_word": args.unknown_per_word,
            "validation_percent": args.validation_percent,
            "testing_percent": args.testing_percent}


OUR_FILES = ["validation_list.txt", "testing_list.txt", "holdout_list.txt", "training_list.txt",
             "clips.tsv", "manifest.json", "README.txt", MARKER]


def prepare_out(out, args):
    """Check OUT: absent, empty, or a set of ours with the same settings (--overwrite: any set
    of ours, emptied first)."""
    settings = settings_of(args)
    if out.exists() and not out.is_dir():
        raise SetError(f"{out}: not a directory")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        if not marker.is_file():
            raise SetError(f"{out}: not empty and not a keyword set made by {PROGRAM} (no "
                           f"{MARKER}); give an empty or new directory")
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError) as error:
            raise SetError(f"{marker}: cannot read it ({error}); remove {out} by hand") from None
        if args.overwrite:
            words = set(old.get("words", [])) | set(old.get("unknown_words", []))
            for entry in out.iterdir():
                if entry.name in words or entry.name == "_background_noise_":
                    shutil.rmtree(entry)
                elif entry.name in OUR_FILES:
                    entry.unlink()
        elif old != settings:
            differ = [key for key in settings if old.get(key) != settings[key]]
            raise SetError(f"{out}: a keyword set made with other settings ({', '.join(differ)}: "
                           + "; ".join(f"{k} {old.get(k)!r} there, {settings[k]!r} now"
                                       for k in differ)
                           + "); give the same ones to continue it, or --overwrite to start over")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps(settings, indent=1) + "\n")
    for word in args.words + args.unknown_words:
        (out / word).mkdir(exist_ok=True)
        for stale in (out / word).glob(".*.tmp"):
            stale.unlink()
    for stale in out.glob("_background_noise_/.*.tmp.wav"):
        stale.unlink()


NOISES = {
    # name: sox synth effects (60 s, 16 kHz mono), then the peak level
    "white_noise.wav": (["synth", str(NOISE_SECONDS), "whitenoise"], -28),
    "pink_noise.wav": (["synth", str(NOISE_SECONDS), "pinknoise"], -20),
    "brown_noise.wav": (["synth", str(NOISE_SECONDS), "brownnoise"], -26),
    "hum_50hz.wav": (["synth", str(NOISE_SECONDS), "sine", "50", "synth", "sine", "mix", "100",
                      "synth", "sine", "mix", "150", "synth", "pinknoise", "mix"], -30),
    "fan.wav": (["synth", str(NOISE_SECONDS), "brownnoise", "lowpass", "600", "tremolo", "0.7",
                 "20"], -26),
}


def make_noises(out):
    directory = out / "_background_noise_"
    directory.mkdir(exist_ok=True)
    for name, (effects, level) in NOISES.items():
        target = directory / name
        if target.is_file() and target.stat().st_size == 44 + 2 * RATE * NOISE_SECONDS:
            continue
        tmp = directory / ("." + name + ".tmp.wav")
        # -r on -n as well: synth at 16 kHz, else sox resamples after the gain.
        command = (["sox", "-R", "-D", "-V2", "-r", str(RATE), "-n", "-r", str(RATE), "-c", "1",
                    "-b", "16", "-e", "signed-integer", str(tmp)]
                   + effects + ["gain", "-n", str(level)])
        rc, o, err = run_tool(command)
        if rc != 0:
            raise SetError(f"{' '.join(command)}: failed ({rc}): {' '.join(err.split())[:300]}")
        os.replace(tmp, target)
    return {name: level for name, (_, level) in NOISES.items()}


def generate(args, quiet=False):
    """Make the set; returns the manifest."""
    out = Path(args.out)
    check_tools(args.synths)
    voices = available_voices(args.synths)
    prepare_out(out, args)
    plan, speakers = make_plan(args, voices)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    total = sum(len(slots) for _, slots in plan)
    say(f"{PROGRAM}: {total} clips of {len(plan)} words into {out} "
        f"({', '.join(args.synths)}; {args.holdout_synth} held out; --jobs {args.jobs})")
    noise_levels = make_noises(out)
    started = time.monotonic()
    results = {}
    done = 0
    stop = threading.Event()

    def work(slot):
        if stop.is_set():
            return None
        return do_slot(out, slot)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        try:
            for word, slots in plan:
                outcomes = list(pool.map(work, slots))
                kept = sum(1 for o in outcomes if o[1])
                dropped = [s for s, o in zip(slots, outcomes) if o[0] is None]
                for slot, outcome in zip(slots, outcomes):
                    results[(slot.word, slot.spk["synth"], slot.k)] = outcome
                done += len(slots)
                elapsed = time.monotonic() - started
                say(f"  {word:<8} {len(slots) - len(dropped)} clips"
                    + (f" ({kept} kept from before)" if kept else "")
                    + (f", {len(dropped)} dropped" if dropped else "")
                    + f"  [{done}/{total}, {elapsed:.0f} s]")
        except KeyboardInterrupt:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    manifest = write_lists(out, args, plan, speakers, voices, results, noise_levels)
    if not quiet:
        counts = manifest["counts"]["total"]
        say(f"{PROGRAM}: {sum(counts.values())} clips "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f", {len(manifest['dropped'])} dropped, in {time.monotonic() - started:.0f} s")
    return manifest


def write_lists(out, args, plan, speakers, voices, results, noise_levels):
    splits = {"training": [], "validation": [], "testing": [], "holdout": []}
    rows = []
    dropped = []
    counts = {}
    for word, slots in plan:
        counts[word] = {k: 0 for k in splits}
        for slot in slots:
            attempt, _, reason = results[(word, slot.spk["synth"], slot.k)]
            if attempt is None:
                dropped.append({"word": word, "speaker": slot.spk["name"], "index": slot.k,
                                "why": reason})
                continue
            name = slot.names[attempt]
            relative = f"{word}/{name}"
            if slot.spk["synth"] == args.holdout_synth:
                split = "holdout"
            else:
                split = which_set(name, args.validation_percent, args.testing_percent)
            splits[split].append(relative)
            counts[word][split] += 1
            clip = slot.attempts[attempt]
            peak, rms = levels(out / relative)
            rows.append([relative, split, slot.spk["synth"], slot.spk["voice"],
                         slot.spk["name"], str(slot.k), clip["text"], str(slot.spk["speed"]),
                         str(slot.spk["pitch"]), str(slot.spk["cents"]), f"{clip['tempo']:.2f}",
                         str(clip["gain"]),
                         " ".join(map(str, clip["reverb"])) if clip["reverb"] else "-",
                         " ".join(map(str, clip["eq"])) if clip["eq"] else "-",
                         f"{clip['offset']:.3f}", str(attempt), f"{peak:.1f}", f"{rms:.1f}"])
    for split, names in splits.items():
        (out / f"{split}_list.txt").write_text("".join(n + "\n" for n in sorted(names)))
    header = ["path", "split", "synth", "voice", "speaker", "index", "text", "speed", "pitch",
              "cents", "tempo", "gain_dbfs", "reverb", "eq", "offset", "attempt", "peak_dbfs",
              "rms_dbfs"]
    rows.sort()
    (out / "clips.tsv").write_text("\t".join(header) + "\n"
                                   + "".join("\t".join(r) + "\n" for r in rows))
    totals = {k: sum(c[k] for c in counts.values()) for k in splits}
    used_voices = {s: sorted({spk["voice"] for spk in speakers[s]}) for s in args.synths}
    manifest = {
        "generator": PROGRAM,
        "settings": settings_of(args),
        "command": "python3 scripts/make-keywords.py " + " ".join(
            [f"--out {args.out}", f"--seed {args.seed}", "--words " + ",".join(args.words),
             "--unknown-words " + ",".join(args.unknown_words) if args.unknown_words
             else "--unknown-words ''",
             "--synths " + ",".join(args.synths), f"--holdout-synth {args.holdout_synth}",
             f"--per-word {args.per_word}", f"--unknown-per-word {args.unknown_per_word}"]),
        "tools": tool_versions(args.synths),
        "format": "RIFF WAVE, PCM, 16 kHz, 16-bit, mono, 16000 samples (1 s)",
        "voices_available": voices,
        "voices_used": used_voices,
        "speakers": {s: len(speakers[s]) for s in args.synths},
        "counts": {"per_word": counts, "total": totals},
        "background_noise": {name: f"{NOISE_SECONDS} s, {level} dBFS peak"
                             for name, level in noise_levels.items()},
        "dropped": dropped,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    lines = [
        "Synthetic keyword-spotting set in the Speech Commands layout, made by "
        f"scripts/{PROGRAM} (tinycnn).",
        "",
        "Command: " + manifest["command"],
        "Tools: " + "; ".join(f"{k} {v}" for k, v in manifest["tools"].items()),
        f"Seed {args.seed}; keywords: {' '.join(args.words)}; unknown words: "
        f"{' '.join(args.unknown_words) or '(none)'}.",
        f"Synthesisers: {', '.join(args.synths)}; held out (holdout_list.txt only, never in "
        f"training, validation or testing): {args.holdout_synth}.",
        f"Speakers per synthesiser: {max(args.per_word, args.unknown_per_word)} "
        f"(each says every keyword; the first {args.unknown_per_word} every unknown word).",
        "Voices: " + "; ".join(f"{s}: {' '.join(v)}" for s, v in used_voices.items()),
        "",
        "Clips: 16 kHz 16-bit mono PCM WAV, 16000 samples, speech roughly centred, peak -30 to "
        "-1 dBFS.",
        "Names: <synth>-<voice>_s<speed>_p<pitch>_c<cents>_nohash_g<peak dBFS>_<speaker>.wav; "
        "clips.tsv has every setting.",
        f"Splits: Speech Commands' which_set() on the name before _nohash_ "
        f"({args.validation_percent:g} % validation, {args.testing_percent:g} % testing); "
        "training_list.txt lists the rest.",
        "A loader that trains on 'everything not in validation_list.txt or testing_list.txt' "
        "must also leave out holdout_list.txt.",
        "",
        "Counts (training / validation / testing / holdout):",
    ] + [f"  {w:<10} {c['training']:5} {c['validation']:5} {c['testing']:5} {c['holdout']:5}"
         for w, c in counts.items()] + [
        f"  {'total':<10} {totals['training']:5} {totals['validation']:5} "
        f"{totals['testing']:5} {totals['holdout']:5}",
        f"Dropped (no speech after {ATTEMPTS} attempts): {len(dropped)}",
        "Background noise (_background_noise_/): " + ", ".join(
            f"{n} ({lvl} dBFS peak)" for n, lvl in noise_levels.items())
        + f", {NOISE_SECONDS} s each.",
    ]
    (out / "README.txt").write_text("\n".join(lines) + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# checks


def wav_header_problem(path):
    """Why a clip's bytes are not a canonical 16 kHz mono 16-bit one-second PCM WAV, or None."""
    data = path.read_bytes()
    if len(data) != 44 + 2 * SAMPLES:
        return f"{len(data)} bytes, not {44 + 2 * SAMPLES}"
    (riff, size, wave_id, fmt, fmt_size, tag, channels, rate, byte_rate, align, bits, data_id,
     data_size) = struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44])
    if (riff, wave_id, fmt, data_id) != (b"RIFF", b"WAVE", b"fmt ", b"data"):
        return "not a RIFF WAVE file with a fmt and a data chunk"
    if (size, fmt_size, data_size) != (len(data) - 8, 16, 2 * SAMPLES):
        return f"chunk sizes {size}, {fmt_size}, {data_size}"
    if (tag, channels, rate, byte_rate, align, bits) != (1, 1, RATE, 2 * RATE, 2, 16):
        return (f"format {tag}, {channels} channels, {rate} Hz, {bits} bits; want PCM (1), 1 "
                f"channel, {RATE} Hz, 16 bits")
    return None


def verify_set(out, synths, holdout):
    """Every clip's header, levels and list membership; raises SetError. Returns counts."""
    lists = {}
    for split in ("training", "validation", "testing", "holdout"):
        path = out / f"{split}_list.txt"
        if not path.is_file():
            raise SetError(f"{path}: missing")
        lists[split] = path.read_text().split()
    seen = {}
    for split, names in lists.items():
        for name in names:
            if name in seen:
                raise SetError(f"{name}: in {seen[name]}_list.txt and {split}_list.txt")
            seen[name] = split
    on_disk = {f"{p.parent.name}/{p.name}" for p in out.glob("*/*.wav")
               if p.parent.name != "_background_noise_"}
    if set(seen) != on_disk:
        raise SetError(f"{out}: listed and present clips differ: "
                       f"{sorted(set(seen) ^ on_disk)[:5]}")
    speakers_in = {}
    for name, split in seen.items():
        problem = wav_header_problem(out / name)
        if problem:
            raise SetError(f"{out / name}: {problem}")
        synth = name.split("/")[1].split("-")[0]
        if (synth == holdout) != (split == "holdout"):
            raise SetError(f"{name}: in {split}_list.txt, but the held-out synthesiser is "
                           f"{holdout}")
        speaker = re.sub(r"_nohash_.*$", "", name.split("/")[1])
        if speakers_in.setdefault(speaker, split) != split:
            raise SetError(f"speaker {speaker} in {speakers_in[speaker]} and {split}")
    for noise in NOISES:
        path = out / "_background_noise_" / noise
        if not path.is_file():
            raise SetError(f"{path}: missing")
    return {split: len(names) for split, names in lists.items()}


def sox_stat(path):
    rc, out, err = run_tool(["sox", str(path), "-n", "stat"])
    stats = {}
    for line in err.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            try:
                stats[key.strip()] = float(value.split()[0])
            except (ValueError, IndexError):
                pass
    return stats


def different_files(a, b):
    """The files of set `a` whose bytes differ in set `b` (the --out path in README.txt and
    manifest.json aside)."""
    differ = []
    for path in sorted(a.rglob("*")):
        if path.is_file():
            other = b / path.relative_to(a)
            mine = path.read_bytes().replace(str(a).encode(), b"OUT")
            theirs = (other.read_bytes().replace(str(b).encode(), b"OUT") if other.is_file()
                      else None)
            if mine != theirs:
                differ.append(str(path.relative_to(a)))
    return differ


def self_check(args):
    """Tiny sets, twice; headers, lists, holdout, levels, determinism, resuming."""
    check_tools(args.synths)
    started = time.monotonic()
    say = lambda *a: print(*a, flush=True)
    with tempfile.TemporaryDirectory(prefix="make-keywords-check-") as tmp:
        def run_into(name, **changes):
            run_args = argparse.Namespace(**vars(args))
            run_args.out = str(Path(tmp, name))
            run_args.words, run_args.unknown_words = ["yes"], ["no"]
            run_args.per_word = run_args.unknown_per_word = 2
            run_args.overwrite = False
            run_args.validation_percent = run_args.testing_percent = 30.0
            for key, value in changes.items():
                setattr(run_args, key, value)
            return generate(run_args, quiet=True), Path(run_args.out)

        manifest, a = run_into("a")
        counts = verify_set(a, args.synths, args.holdout_synth)
        clips = sorted(a.glob("*/*.wav"))
        expected = 2 * 2 * len(args.synths) - len(manifest["dropped"])
        say(f"check: {len(clips) - len(NOISES)} clips and {len(NOISES)} noise files; headers, "
              f"lists and holdout separation right ({counts})")
        if len(clips) - len(NOISES) != expected or manifest["dropped"]:
            raise SetError(f"check: {len(clips) - len(NOISES)} clips, expected {expected}; "
                           f"dropped {manifest['dropped']}")
        for path in clips:
            stats = sox_stat(path)
            peak = stats.get("Maximum amplitude", 0)
            if path.parent.name == "_background_noise_":
                continue
            if not 0.02 < peak < 1.0 or stats.get("Samples read") != SAMPLES:
                raise SetError(f"{path}: sox stat says peak {peak}, "
                               f"{stats.get('Samples read')} samples")
        say("check: sox stat: every clip 16000 samples, peak between -34 and 0 dBFS")
        _, b = run_into("b")
        differ = different_files(a, b)
        if differ:
            raise SetError(f"check: two runs with the same seed differ in {differ}")
        say("check: a second run gives the same bytes (every file)")
        victim = next(p for p in sorted(b.glob("yes/*.wav")))
        victim.unlink()
        (b / "yes" / ".junk.wav.tmp").write_bytes(b"partial")
        before = {p: p.stat().st_mtime_ns for p in b.glob("*/*.wav")}
        _, b = run_into("b")
        differ = different_files(a, b)
        touched = [p for p, t in before.items() if p.stat().st_mtime_ns != t]
        if differ or not victim.is_file() or touched or list(b.glob("*/.*.tmp")):
            raise SetError(f"check: resuming differs {differ} or rewrote {touched}")
        say("check: resuming remakes only the missing clip, the same bytes")
        _, c = run_into("c", seed=args.seed + 1)
        if sorted(p.name for p in a.glob("yes/*")) == sorted(p.name for p in c.glob("yes/*")):
            raise SetError("check: another seed gives the same clips")
        try:
            run_into("c")
        except SetError as error:
            assert "other settings" in str(error), error
        else:
            raise SetError("check: a set made with another seed was continued")
        (Path(tmp, "d")).mkdir()
        (Path(tmp, "d", "something")).write_text("x")
        try:
            run_into("d")
        except SetError as error:
            assert "not a keyword set" in str(error), error
        else:
            raise SetError("check: a foreign non-empty directory was written into")
        say("check: another seed gives other clips; other settings and foreign directories "
              "are refused")
    print(f"{PROGRAM} --check: all right ({time.monotonic() - started:.0f} s)")


# ---------------------------------------------------------------------------------------------


def word_list(text):
    words = [w for w in re.split(r"[,\s]+", text.strip()) if w]
    for w in words:
        if not re.fullmatch(r"[a-z][a-z']*", w):
            raise argparse.ArgumentTypeError(f"{w!r}: a word is lower-case letters")
    return words


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Make a keyword-spotting set (Speech Commands layout) with espeak-ng, flite "
        "and festival. The defaults make 6,000 clips (195 MB) in about 10 minutes of CPU: about "
        "5 minutes with --jobs 2 on an idle 2-core machine, 10 on a busy one. See the top of the "
        "script for the details.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", help="the set's directory (new, empty, or one this script "
                        "made, which it continues)")
    parser.add_argument("--check", action="store_true",
                        help="self-test: tiny sets in a temporary directory (about 10 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--words", type=word_list, default=KEYWORDS,
                        help="the keywords, comma- or space-separated")
    parser.add_argument("--unknown-words", type=word_list, default=UNKNOWN_WORDS,
                        help="words for the 'unknown' class ('' for none)")
    parser.add_argument("--synths", default="espeak,flite,festival",
                        help="synthesisers, from espeak, flite, festival")
    parser.add_argument("--holdout-synth", default=None,
                        help="the synthesiser kept out of training/validation/testing, or none "
                        "(default festival, else flite)")
    parser.add_argument("--per-word", type=int, default=100,
                        help="clips of each keyword per synthesiser (speakers)")
    parser.add_argument("--unknown-per-word", type=int, default=None,
                        help="clips of each unknown word per synthesiser (default half "
                        "--per-word)")
    parser.add_argument("--validation-percent", type=float, default=10.0)
    parser.add_argument("--testing-percent", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2, help="clips made at once")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over: remove the set in --out first")
    args = parser.parse_args(argv)
    args.synths = [s for s in re.split(r"[,\s]+", args.synths) if s]
    for s in args.synths:
        if s not in SYNTHS:
            parser.error(f"--synths: {s!r} is not one of {', '.join(SYNTHS)}")
    if len(set(args.synths)) != len(args.synths) or not args.synths:
        parser.error("--synths: each synthesiser once, at least one")
    if args.holdout_synth is None:
        args.holdout_synth = "festival" if "festival" in args.synths else (
            "flite" if "flite" in args.synths and len(args.synths) > 1 else "none")
    if args.holdout_synth != "none":
        if args.holdout_synth not in args.synths:
            parser.error(f"--holdout-synth {args.holdout_synth}: not among --synths")
        if len(args.synths) < 2:
            parser.error("--holdout-synth: a held-out synthesiser needs another one to train on")
    if args.unknown_per_word is None:
        args.unknown_per_word = (args.per_word + 1) // 2
    if args.per_word < 1 or args.unknown_per_word < 0 or args.jobs < 1:
        parser.error("--per-word and --jobs are at least 1, --unknown-per-word at least 0")
    if set(args.words) & set(args.unknown_words) or len(set(args.words)) != len(args.words) or \
            len(set(args.unknown_words)) != len(args.unknown_words):
        parser.error("--words and --unknown-words: each word once, in one of them")
    if not args.words:
        parser.error("--words: at least one keyword")
    if not (0 <= args.validation_percent and 0 <= args.testing_percent
            and args.validation_percent + args.testing_percent <= 100):
        parser.error("--validation-percent and --testing-percent: 0 to 100 together")
    if not args.check and not args.out:
        parser.error("give --out DIR (or --check)")
    return args


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, interrupted)  # kill stops a run as Ctrl-C does
    try:
        if args.check:
            self_check(args)
        else:
            generate(args)
            counts = verify_set(Path(args.out), args.synths, args.holdout_synth)
            print(f"{PROGRAM}: verified: every clip 16 kHz mono 16-bit, 16000 samples; lists "
                  f"disjoint, complete, holdout separate ({counts})")
    except SetError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a directory that cannot be written
        where = f"{error.filename}: " if error.filename else ""
        print(f"{PROGRAM}: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROGRAM}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
