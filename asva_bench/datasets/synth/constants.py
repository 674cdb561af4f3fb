"""The synth generator's fixed numbers and file names (no numpy: the registry reads them)."""

GENERATOR = "asva-bench synth"
#: Bump whenever the pixels or samples a seed produces change.
VERSION = 3
FPS = 24
SIZE = 256
SAMPLE_RATE = 16000
MIN_FRAMES, MAX_FRAMES = 3 * FPS, 8 * FPS          # 3-8 s clips
MIN_EVENT_FRAMES = 4                                # 1/6 s: seen by 6 fps sampling
EVENT_RATE_LIMITS = (0.5, 3.0)                      # events per second, eventful classes
#: Least silence between two events: twice the validity suite's largest shift
#: below 1 s (0.5 s).  A frame shift of up to 0.5 s then never brings a visual
#: onset or offset within 0.5 s of a neighbouring event's sound onset or offset,
#: so audio-visual alignment falls monotonically with the shift.  Measured: with
#: gaps down to 0.08 s (version 1) or 0.5 s (version 2) the RelSync of the
#: shifted ground truth rose again from 0.33 to 0.5 s (a visual event shifted by
#: the gap lands on the previous sound's end); on the videos whose gaps were all
#: >= 1 s it fell strictly.  The price: eventful classes run at 0.5 to about
#: 0.9 events per second, the low end of AVSync15-like rates.
MIN_EVENT_GAP_S = 1.0
TEST_FRACTION = 0.1
DEFAULT_VIDEOS_PER_CLASS = 100
ENCODER_PRESET = "ultrafast"
MARKER = "synth.json"
PLAN = "synth.building.json"   # settings of a build in progress, so it can be resumed
ENV_VAR = "ASVA_SYNTH_ROOT"
#: Shown in help texts; the default root is ``$ASVA_BENCH_HOME/datasets/synth`` (:func:`default_root`).
DEFAULT_ROOT = "$ASVA_BENCH_HOME/datasets/synth"
