"""Generate the mmfuse evaluation corpus in examples/eval-corpus: 66 short clips, 123 queries with word collisions.

The sample corpus (examples/corpus) answers every query with exactly one modality and shares no words between
clips. This corpus is harder on purpose, so that fusion methods can be compared on it:

- words collide across clips and modalities: one clip shows TRAIN STATION, another speaks about training a
  puppy, a third has the metadata title "Station wagon repair";
- some queries need two modalities of the same clip while other clips match each half alone (the clip shows
  HARBOUR and says "the ferry is late"; another clip shows HARBOUR, a third says "the ferry was late");
- captions appear for part of a clip only: partway through over a still background, disappearing before the
  end, one caption after another, in the second 10-second window of a longer clip;
- espeak-ng voices and speeds, DejaVu fonts, sizes, colours and positions vary; mp4, webm, mkv and audio-only
  m4a files; metadata (``metadata.json``) for about half of the clips; one rotated and one variable-frame-rate clip.

Queries paraphrase lightly, as users type (lowercase, no punctuation, words reordered, dropped, inflected or
replaced by a declared synonym). ``check_design()`` asserts the intended properties on the text (each query's
words are in the claimed modality of its clip and in no other clip as a whole; the collisions exist as designed)
before anything is written. The corpus was designed before, and independently of, the fusion methods it
evaluates. Needs espeak-ng, PyAV, Pillow and numpy; the output is committed. Usage::

    python examples/make_eval_corpus.py [--out examples/eval-corpus] [--check] [--only ID,ID] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mmfuse.errors import MmfuseError  # noqa: E402
from mmfuse.ingest import synth  # noqa: E402

FPS = 25
SIZE = (320, 240)
AUDIO_RATE = synth.AUDIO_RATE
AUDIO_BIT_RATE = 32000  # speech only: small files, still transcribed word for word
SEED = 20240611
SPEECH_TAIL = 0.6  # seconds of silence kept after the last word


# ---------------------------------------------------------------------------------------------- design types


@dataclass(frozen=True)
class Cap:
    """On-screen text shown from ``start`` to ``end`` seconds (None: to the end of the clip)."""

    text: str
    start: float = 0.0
    end: float | None = None
    style: str = "band_top"
    font: str = "DejaVuSans-Bold"
    size: int | None = None  # None: the largest size up to max_size that fits
    max_size: int = 44


@dataclass(frozen=True)
class Speech:
    text: str
    voice: str = "en"
    speed: int = 130
    start: float = 0.5
    gap: int = 4


@dataclass(frozen=True)
class Meta:
    title: str
    description: str
    tags: tuple[str, ...]


@dataclass
class Clip:
    id: str
    scene: str | None  # None: audio only
    seconds: float
    desc: str  # what the picture shows (subtitles.json "desc"; the visual queries use it)
    caps: tuple[Cap, ...] = ()
    speech: Speech | None = None
    meta: Meta | None = None
    ext: str = ".mp4"
    palette: int = 0
    rotation: int = 0
    vfr: bool = False


@dataclass(frozen=True)
class Q:
    qid: str
    text: str
    mods: str  # "ocr", "asr", "meta", "ocr+asr", "ocr+meta", "asr+meta" or "visual"
    rel: str
    syn: tuple[tuple[str, str], ...] = ()  # (query word, word it stands for in the clip's text)


# Caption looks: keyword arguments for synth.draw_text.
STYLES: dict[str, dict] = {
    "band_top": {"position": "top", "panel": (0, 0, 0), "fill": (255, 255, 255)},
    "band_bottom": {"position": "bottom", "panel": (0, 0, 0), "fill": (255, 255, 255)},
    "band_mid": {"position": "middle", "panel": (0, 0, 0), "fill": (255, 255, 255)},
    "yellow_top": {"position": "top", "panel": (250, 210, 0), "fill": (0, 0, 0)},
    "yellow_bottom": {"position": "bottom", "panel": (250, 210, 0), "fill": (0, 0, 0)},
    "navy_bottom": {"position": "bottom", "panel": (10, 25, 90), "fill": (255, 255, 255)},
    "red_top": {"position": "top", "panel": (170, 20, 20), "fill": (255, 255, 255)},
    "green_top": {"position": "top", "panel": (0, 105, 50), "fill": (255, 255, 255)},
    "white_mid": {"position": "middle", "panel": (245, 245, 245), "fill": (15, 15, 15)},
    "plain_top": {"position": "top", "panel": None, "fill": (255, 255, 255), "stroke_width": 2,
                  "stroke_fill": (0, 0, 0)},
    "plain_mid": {"position": "middle", "panel": None, "fill": (255, 255, 255), "stroke_width": 2,
                  "stroke_fill": (0, 0, 0)},
    "plain_bottom": {"position": "bottom", "panel": None, "fill": (255, 240, 120), "stroke_width": 2,
                     "stroke_fill": (0, 0, 0)},
    "box_left": {"position": "top", "align": "left", "panel": (0, 0, 0), "full_width": False, "pad": 8},
    "box_right": {"position": "bottom", "align": "right", "panel": (30, 30, 30), "full_width": False, "pad": 8},
    "small_dark": {"position": (0.08, 0.68), "panel": None, "fill": (25, 25, 25)},
}

# Scenes are drawn in the picture's own colours; a palette index picks one of these backgrounds/foregrounds.
PALETTES = [
    ((20, 40, 110), (250, 200, 40)),
    ((15, 90, 60), (240, 240, 240)),
    ((90, 30, 90), (120, 230, 230)),
    ((120, 60, 20), (250, 150, 40)),
    ((30, 30, 30), (230, 60, 60)),
    ((60, 110, 160), (255, 255, 255)),
    ((200, 190, 160), (60, 80, 40)),
    ((10, 10, 40), (200, 200, 255)),
]


# ---------------------------------------------------------------------------------------------- the clips

C, S, M = Cap, Speech, Meta

CLIPS: list[Clip] = [
    # --- train / station / training
    Clip("e01_train_station", "drift", 7, "white circles drift right over dark blue", palette=0,
         caps=(C("TRAIN STATION"),),
         speech=S("Grandpa made soup and bread for lunch.", "en-us", 130, 0.6)),
    Clip("e02_puppy", "bounce", 8, "a pale ball bounces on dark green", ext=".webm", palette=1,
         caps=(C("PARK RULES", 2.0, 6.5, "yellow_bottom", "DejaVuSerif-Bold"),),
         speech=S("We are training our new puppy to sit and stay.", "en-us", 140, 0.4),
         meta=M("Sunday in the park", "A walk with the dog on a sunny afternoon.", ("dog", "park", "sunday"))),
    Clip("e03_wagon", "stripes", 6, "horizontal stripes scroll downwards", palette=3,
         caps=(C("OPEN LATE", 0.0, 3.0, "plain_mid", "DejaVuSansCondensed-Bold", max_size=48),),
         speech=S("Check the oil before every long drive.", "en-gb-x-rp", 120, 0.5),
         meta=M("Station wagon repair", "Fixing the rear door of an old family car.", ("car", "repair", "garage"))),
    # --- harbour / ferry (two-modality group)
    Clip("e04_ferry_harbour", "still", 9, "a still picture of a grey boat on a blue sea", palette=5,
         caps=(C("HARBOUR", 3.5, None, "navy_bottom", "DejaVuSans-Bold", max_size=40),),
         speech=S("The ferry is late again this morning.", "en-gb", 115, 0.5)),
    Clip("e05_fish_market", "waves", 7, "light wavy bands move over deep blue", ext=".mkv", palette=5,
         caps=(C("HARBOUR", 0.0, 3.0, "plain_top", "DejaVuSerifCondensed-Bold"),
               C("FISH MARKET", 3.0, None, "plain_top", "DejaVuSerifCondensed-Bold")),
         speech=S("Pigeons were stealing chips from the tourists.", "en", 135, 0.4),
         meta=M("Coastal town walk", "Boats, gulls and the old lighthouse on the northern coast.",
                ("coast", "boats", "travel"))),
    Clip("e06_ferry_storm", "rain", 7, "grey rain streaks fall on a dark sky", palette=7,
         caps=(C("WEATHER REPORT", style="band_top", font="DejaVuSansMono-Bold"),),
         speech=S("The ferry boat departure was late because of the storm.", "en", 125, 0.5)),
    # --- bread / coffee / laptop
    Clip("e07_bakery", "orbit", 7, "small discs circle the centre on brown", palette=3,
         caps=(C("FRESH BREAD", 1.5, 5.0, "white_mid", "DejaVuSerif-Bold"),),
         speech=S("The bakery on our street opens every morning.", "en-gb-x-rp", 125, 0.5),
         meta=M("Morning routine", "Coffee, stretching and a slow breakfast.", ("morning", "routine", "coffee"))),
    Clip("e08_coffee_break", "still", 8, "a still picture of a grey desk with a mug", palette=6,
         caps=(C("COFFEE BREAK", 2.5, None, "small_dark", "DejaVuSans", size=24),),
         meta=M("Office life", "A quiet afternoon at the desk.", ("office", "work"))),
    Clip("e09_laptop", "pulse", 6, "a square pulses while the background brightens and darkens", ext=".webm",
         palette=4, caps=(C("HALF PRICE", style="red_top", font="DejaVuSansCondensed-Bold"),),
         speech=S("I knocked coffee all over my new laptop.", "en", 125, 0.5)),
    Clip("e10_laptop_guide", "bars", 8, "vertical bars slide left on purple", palette=2,
         caps=(C("PART ONE", 0.0, 4.0, "band_bottom", "DejaVuSans"),),
         speech=S("Battery life matters more than screen size.", "en-us", 140, 0.6),
         meta=M("Laptop buying guide", "Which computer to pick for students at a fair price.",
                ("laptop", "students", "review"))),
    # --- roses / garden / shed
    Clip("e11_rose_garden", "flowers", 6, "pink blossoms sway on green", palette=1,
         caps=(C("ROSE GARDEN", style="plain_top", font="DejaVuSerif-BoldItalic"),),
         meta=M("Spring flowers", "Tulips and daffodils in bloom.", ("flowers", "spring"))),
    Clip("e12_roses", "drift", 7, "pale circles drift over dark green", palette=1,
         caps=(C("WEEKEND PROJECT", style="band_bottom", font="DejaVuSans"),),
         speech=S("On Saturday we planted roses along the fence.", "en-gb", 120, 0.5)),
    Clip("e13_shed", "still", 9, "a still picture of a brown shed on a beige ground", ext=".mkv", palette=6,
         caps=(C("WEEK ONE", 0.0, 4.5, "band_top"), C("WEEK TWO", 4.5, None, "band_top")),
         speech=S("You must sand the wood before you paint it.", "en-gb-x-rp", 125, 1.0),
         meta=M("Garden shed makeover", "Painting the old shed bright blue.", ("garden", "diy", "paint"))),
    # --- bridge / bus / last train / fire
    Clip("e14_bridge", "traffic", 8, "coloured blocks drive across a grey road", palette=4,
         caps=(C("BRIDGE CLOSED", 0.0, 3.5, "yellow_top", "DejaVuSerifCondensed-Bold"),),
         speech=S("Park the car and take the bus into town.", "en-gb-x-rp", 135, 0.8)),
    Clip("e15_last_train", "night", 7, "stars twinkle on a night sky", palette=7,
         caps=(C("LOST PROPERTY", style="band_mid", font="DejaVuSansCondensed-Bold"),),
         speech=S("The last train leaves at midnight.", "en", 115, 0.5)),
    Clip("e16_fire_exit", "pulse", 6, "a square pulses on dark red", ext=".mkv", palette=4,
         caps=(C("FIRE EXIT", style="green_top", font="DejaVuSans"),),
         speech=S("Please switch off your phones during the film.", "en-gb", 140, 0.5)),
    Clip("e17_campfire", "flicker", 8, "orange flames flicker on black", palette=3,
         caps=(C("GOOD NIGHT", 4.0, None, "plain_bottom", "DejaVuSans-BoldOblique"),),
         speech=S("We sang songs around the fire until midnight.", "en-us", 125, 0.5),
         meta=M("Scout camp", "Tents, canoes and a night hike.", ("camping", "scouts", "outdoors"))),
    Clip("e18_fire_drill", "crowd", 7, "many small dots walk across a yard", ext=".webm", palette=6,
         caps=(C("ASSEMBLY POINT", style="band_top", font="DejaVuSerif-Bold"),),
         speech=S("Everyone walk calmly to the playground.", "en-gb-x-gbclan", 130, 0.5),
         meta=M("Fire safety drill at school", "Volunteers help the students line up in the playground.",
                ("school", "safety", "fire"))),
    # --- library / printer (two-modality group)
    Clip("e19_library_printer", "still", 8, "a still picture of bookshelves", palette=6,
         caps=(C("LIBRARY", 2.0, None, "box_left", "DejaVuSerif", size=30),),
         speech=S("The printer is out of paper again.", "en-us", 135, 0.5)),
    Clip("e20_city_library", "drift", 7, "circles drift over plum", palette=2,
         caps=(C("CITY LIBRARY", style="band_bottom", font="DejaVuSerif-Bold"),),
         speech=S("My brother repairs old bikes.", "en", 110, 0.5)),
    Clip("e21_printer_meeting", None, 6, "no picture",
         speech=S("The office printer ran out of paper during the meeting.", "en-gb-x-rp", 145, 0.4),
         ext=".m4a", meta=M("Voice memo", "Reminder recorded on my phone on the way home.", ("memo", "reminder"))),
    # --- pizza / delivery / snow (two-modality group)
    Clip("e22_pizza_snow", "snow", 8, "white flakes fall on dark blue", palette=0,
         caps=(C("PIZZA", style="plain_mid", font="DejaVuSans-Bold", max_size=52),),
         speech=S("The delivery driver got lost in the snow.", "en-us-nyc", 130, 0.5)),
    Clip("e23_pizza_night", "orbit", 6, "small discs circle on dark red", ext=".webm", palette=4,
         caps=(C("PIZZA NIGHT", style="band_top", font="DejaVuSerif-BoldItalic"),),
         speech=S("My aunt makes the best lemon cake.", "en-gb-scotland", 120, 0.5),
         meta=M("Family kitchen", "Recipes we cook together.", ("cooking", "family", "recipes"))),
    Clip("e24_parcel", "bars", 7, "vertical bars slide over navy", palette=0,
         caps=(C("ORDER STATUS", 0.0, 4.0, "band_top", "DejaVuSansMono"),),
         speech=S("Our parcel delivery got lost in the snow last week.", "en", 140, 0.5)),
    # --- mountain pass / icy road (two-modality group)
    Clip("e25_mountain_pass", "mountains", 9, "white peaks under drifting clouds", palette=5,
         caps=(C("MOUNTAIN PASS", style="plain_top", font="DejaVuSans-Bold"),),
         speech=S("Drive slowly, the road is icy near the top.", "en-gb", 125, 0.5)),
    Clip("e26_summit_cafe", "mountains", 11, "white peaks under drifting clouds", ext=".mkv", palette=5,
         caps=(C("MOUNTAIN PASS", 0.0, 4.0, "plain_top"), C("SUMMIT CAFE", 6.0, None, "band_bottom", "DejaVuSerif")),
         speech=S("My legs hurt after the long hike.", "en-us", 125, 1.0)),
    Clip("e27_icy_road", "rain", 7, "sleet falls on grey", palette=7,
         caps=(C("REPAIR CAFE", style="box_right", font="DejaVuSans-Bold", size=28),),
         speech=S("The road was icy so we walked to school.", "en-us-nyc", 125, 0.5)),
    # --- birthday / candles (two-modality group)
    Clip("e28_birthday", "confetti", 8, "coloured confetti dots on dark purple", palette=2,
         caps=(C("BIRTHDAY", style="plain_mid", font="DejaVuSerif-Bold", max_size=52),),
         speech=S("Do not forget to buy candles and balloons.", "en-gb-x-gbcwmd", 125, 0.5)),
    Clip("e29_happy_birthday", "confetti", 6, "coloured confetti dots on navy", ext=".webm", palette=0,
         caps=(C("HAPPY BIRTHDAY", style="band_top", font="DejaVuSansCondensed-Bold"),),
         speech=S("The cat is sleeping on the piano.", "en-us", 130, 0.5),
         meta=M("Lazy Sunday", "Our cat does nothing all day.", ("cat", "pets", "sunday"))),
    Clip("e30_party_supplies", None, 5, "no picture",
         speech=S("We need more candles and balloons for the party.", "en-gb", 130, 0.4), ext=".m4a"),
    # --- swimming pool / coach (two-modality group)
    Clip("e31_swim_coach", "waves", 8, "light ripples move over turquoise", palette=5,
         caps=(C("SWIMMING POOL", style="band_top", font="DejaVuSansMono-Bold"),),
         speech=S("The coach blew his whistle twice.", "en-gb-x-rp", 125, 0.5)),
    Clip("e32_pool_closed", "waves", 8, "light ripples move over turquoise", palette=5,
         caps=(C("SWIMMING POOL", 0.0, 4.0, "band_top", "DejaVuSerif"),
               C("CLOSED ON MONDAYS", 4.0, None, "band_top", "DejaVuSerif")),
         speech=S("Bring a towel and some sunscreen.", "en-gb-x-gbcwmd", 130, 0.5),
         meta=M("Summer holiday plans", "Beaches and markets in August.", ("summer", "holiday", "travel"))),
    Clip("e33_beach", "sand", 7, "a beige beach under a moving blue sea line", palette=6,
         caps=(C("BEACH VOLLEYBALL", style="band_bottom", font="DejaVuSansCondensed-Bold"),),
         speech=S("The coach lost his whistle in the sand.", "en-gb", 130, 0.5)),
    # --- volcano / Iceland road trip (two-modality group, OCR + metadata)
    Clip("e34_volcano", "still", 8, "a still picture of a dark cone under an orange sky", palette=3,
         caps=(C("ACTIVE VOLCANO", 3.0, None, "plain_mid", "DejaVuSans-Bold", max_size=36),),
         meta=M("Iceland road trip", "Day three: black sand beaches and geysers.", ("iceland", "travel", "roadtrip"))),
    Clip("e35_volcano_model", "bubbles", 7, "bubbles rise on dark red", ext=".webm", palette=4,
         caps=(C("VOLCANO MODEL", style="band_top", font="DejaVuSansMono-Bold"),),
         speech=S("Add vinegar to make the lava fizz.", "en-us", 130, 0.5),
         meta=M("Science fair project", "How to build a model at home.", ("science", "school", "kids"))),
    Clip("e36_northern_lights", "aurora", 7, "green light bands wave over a night sky", ext=".mkv", palette=7,
         caps=(C("NORTHERN LIGHTS", 1.0, None, "plain_top", "DejaVuSerif-Bold"),),
         meta=M("Road trip across Iceland in winter", "Snowy roads, few tourists and the aurora.",
                ("iceland", "winter", "aurora"))),
    # --- chess club / community hall (two-modality group, OCR + metadata)
    Clip("e37_chess_club", "checker", 8, "a checkerboard scrolls slowly", palette=6,
         caps=(C("CHESS CLUB", style="band_top", font="DejaVuSerifCondensed-Bold"),),
         meta=M("Thursday evenings", "Weekly games at the community hall.", ("games", "weekly"))),
    Clip("e38_final_round", "checker", 8, "a checkerboard scrolls slowly", ext=".webm", palette=1,
         caps=(C("CHESS CLUB", 0.0, 3.5, "band_top", "DejaVuSans-BoldOblique"),
               C("FINAL ROUND", 3.5, None, "band_top", "DejaVuSans-BoldOblique")),
         speech=S("She won the final game by a single point.", "en-gb", 125, 0.5)),
    Clip("e39_hall_renovation", "bars", 7, "vertical bars slide over brown", palette=3,
         caps=(C("VOLUNTEERS WANTED", 0.0, 4.0, "yellow_top", "DejaVuSansCondensed-Bold"),),
         speech=S("Thanks to everyone who helped paint the walls.", "en-us", 130, 0.5),
         meta=M("Community hall renovation", "New floors and a fresh coat of paint.", ("community", "building"))),
    # --- kittens / sheep farm (two-modality group, speech + metadata)
    Clip("e40_kittens_farm", "drift", 8, "pale circles drift over olive", palette=6,
         speech=S("The kittens were born last night.", "en-gb-x-gbclan", 130, 0.8),
         meta=M("Farm diary", "Life on a small sheep farm.", ("farm", "sheep"))),
    Clip("e41_kittens_bed", None, 5, "no picture",
         speech=S("Tiny kittens were born under the bed.", "en-gb", 125, 0.4), ext=".m4a",
         meta=M("Voice note", "Good news: the vet visit was free.", ("news", "home"))),
    Clip("e42_sheep_open_day", "drift", 7, "white circles drift over green", palette=1,
         caps=(C("FREE ENTRY", style="box_left", font="DejaVuSans-Bold", size=32),),
         meta=M("Sheep farm open day", "Meet the lambs and try the cheese.", ("farm", "sheep", "family"))),
    # --- gloves / ski trip (two-modality group, speech + metadata)
    Clip("e43_gloves_ski", "snow", 7, "white flakes fall on grey blue", palette=5,
         speech=S("Bring warm gloves because it is freezing outside.", "en-gb-scotland", 120, 0.5),
         meta=M("Ski trip packing list", "Everything we take every winter.", ("ski", "packing"))),
    Clip("e44_gloves_bus", None, 4, "no picture",
         speech=S("I lost my gloves on the bus.", "en-gb-x-gbclan", 140, 0.4), ext=".m4a"),
    Clip("e45_ski_tips", "mountains", 7, "white peaks under drifting clouds", ext=".mkv", palette=0,
         caps=(C("PACKING CHECKLIST", style="band_mid", font="DejaVuSansMono-Bold"),),
         meta=M("Ski trip packing tips", "What to bring to the mountains in cold weather.",
                ("ski", "tips", "camping"))),
    # --- gate 12 / Lisbon flight (two-modality group)
    Clip("e46_gate12", "still", 8, "a still picture of a grey hall with windows", palette=6,
         caps=(C("GATE 12", 2.0, None, "box_left", "DejaVuSans-Bold", size=30),),
         speech=S("Your flight to Lisbon is now boarding.", "en-gb-x-rp", 130, 0.5)),
    Clip("e47_gate_coffee", "drift", 6, "circles drift over grey", ext=".webm", palette=4,
         caps=(C("GATE 12", style="band_top", font="DejaVuSansCondensed"),),
         speech=S("The coffee machine is broken again.", "en", 135, 0.5)),
    Clip("e48_departures", "board", 7, "rows of lights blink on black", palette=7,
         caps=(C("INTERNATIONAL DEPARTURES", style="band_top", font="DejaVuSansMono-Bold"),),
         speech=S("Boarding for the Lisbon flight starts soon.", "en-us", 130, 0.5),
         meta=M("Airport vlog", "Waiting for our plane home.", ("airport", "travel"))),
    # --- odd encodings and the visual-only clips
    Clip("e49_portrait_tide", "sun", 6, "a yellow sun above blue waves, in portrait", rotation=90, palette=5,
         caps=(C("SURF REPORT", style="band_top", max_size=34),),
         speech=S("Low tide is early this afternoon.", "en", 130, 0.5)),
    Clip("e50_vfr_arcade", "jerky", 7, "cyan rectangles jump around dark grey", vfr=True, palette=4,
         caps=(C("GAME OVER", style="band_mid", font="DejaVuSansMono-Bold"),),
         speech=S("Press start to play again.", "en-029", 125, 0.5),
         meta=M("Retro arcade", "Old machines in a basement.", ("games", "arcade"))),
    Clip("e51_red_ball", "ball", 5, "a red ball bounces on bright green", palette=1),
    Clip("e52_purple_squares", "spin", 5, "purple squares spin on black", palette=4),
    # --- dentist / appointment (two-modality group)
    Clip("e53_dentist", "still", 8, "a still picture of a white room with a chair", palette=5,
         caps=(C("DENTIST", 3.0, None, "small_dark", "DejaVuSans-Bold", size=26),),
         speech=S("My appointment moved to Friday morning.", "en-gb", 125, 0.5)),
    Clip("e54_teeth", "pulse", 6, "a square pulses on teal", palette=5,
         caps=(C("DENTIST", style="band_top", font="DejaVuSerif-Bold"),),
         speech=S("Brush your teeth twice a day.", "en-us", 125, 0.5)),
    Clip("e55_hair_salon", "orbit", 7, "small discs circle on plum", ext=".webm", palette=2,
         caps=(C("HAIR SALON", 0.0, 4.5, "yellow_top", "DejaVuSerifCondensed"),),
         speech=S("I have a hair appointment on Friday.", "en-gb-x-gbclan", 125, 0.5)),
    # --- marathon / sore legs (two-modality group)
    Clip("e56_marathon", "crowd", 8, "many small dots run across a yard", palette=0,
         caps=(C("MARATHON", style="plain_top", font="DejaVuSans-Bold", max_size=48),),
         speech=S("My legs hurt after the final twenty miles.", "en-us", 130, 0.5)),
    Clip("e57_finish_line", "crowd", 12, "many small dots run across a yard", palette=1,
         caps=(C("MARATHON", 0.0, 5.0, "band_top", "DejaVuSansMono"),
               C("FINISH LINE", 8.5, None, "band_top", "DejaVuSerif-Bold")),
         speech=S("Drink water at every station.", "en-gb", 125, 1.0)),
    # --- open mic / jazz theatre (two-modality group, OCR + metadata)
    Clip("e58_open_mic", "flicker", 7, "warm lights flicker on black", palette=3,
         caps=(C("OPEN MIC", style="band_bottom", font="DejaVuSans-Bold"),),
         meta=M("Jazz evening", "Local musicians at the old theatre, tickets at the door.",
                ("music", "jazz", "theatre", "piano"))),
    Clip("e59_open_mic_bar", "orbit", 7, "small discs circle on brown", ext=".mkv", palette=3,
         caps=(C("OPEN MIC", style="plain_mid", font="DejaVuSerif-BoldItalic"),),
         speech=S("Put your name on the list at the bar.", "en-us-nyc", 130, 0.5)),
    Clip("e60_theatre_tour", "night", 7, "small lights twinkle on dark blue", palette=0,
         caps=(C("TICKETS SOLD OUT", 0.0, 4.0, "red_top", "DejaVuSansCondensed-Oblique"),),
         speech=S("The show starts in five minutes.", "en-us", 130, 0.5),
         meta=M("Theatre tour", "Backstage at the jazz festival.", ("theatre", "jazz", "festival"))),
    # --- whisked eggs / pancakes (two-modality group, speech + metadata)
    Clip("e61_pancakes", "orbit", 7, "small discs circle on yellow brown", palette=3,
         speech=S("Whisk the eggs until they are fluffy.", "en-gb-scotland", 130, 0.5),
         meta=M("Pancake breakfast", "Weekend cooking with the kids.", ("cooking", "breakfast", "kids"))),
    Clip("e62_cake_shop", "drift", 6, "pale circles drift over plum", ext=".webm", palette=2,
         caps=(C("CAKE SHOP", style="white_mid", font="DejaVuSerif-Bold"),),
         speech=S("Whisk the eggs with a little sugar.", "en-gb-scotland", 135, 0.5)),
    Clip("e63_pancake_race", "crowd", 7, "many small dots run across a yard", palette=6,
         speech=S("Run and flip at the same time.", "en-gb-x-rp", 125, 0.5),
         meta=M("Pancake day race", "A village tradition every spring.", ("pancake", "race", "village"))),
    # --- car wash / dog in a bucket (two-modality group)
    Clip("e64_car_wash", "bubbles", 8, "bubbles rise on blue", palette=5,
         caps=(C("CAR WASH", style="yellow_top", font="DejaVuSerifCondensed-Bold"),),
         speech=S("The dog jumped into a muddy puddle.", "en-us", 120, 0.5)),
    Clip("e65_dog_puddle", "waves", 7, "light ripples move over green", palette=1,
         caps=(C("NO SWIMMING", 0.0, 4.0, "red_top", "DejaVuSerif-Italic"),),
         speech=S("Our dog jumped into a muddy puddle by the lake.", "en-gb", 120, 0.5)),
    Clip("e66_car_wash_hose", "rain", 7, "water streaks fall on grey", ext=".mkv", palette=7,
         caps=(C("CAR WASH", style="plain_top", font="DejaVuSans-Oblique"),),
         speech=S("The hose sprayed soap in my hair.", "en-us", 125, 0.5),
         meta=M("Saturday chores", "Putting the house in order before the guests arrive.", ("chores", "cleaning"))),
]

# ---------------------------------------------------------------------------------------------- the queries

QUERIES: list[Q] = [
    # on-screen text only
    Q("q001", "train station", "ocr", "e01_train_station"),
    Q("q002", "park rules sign", "ocr", "e02_puppy"),
    Q("q003", "open late", "ocr", "e03_wagon"),
    Q("q004", "the fish market", "ocr", "e05_fish_market"),
    Q("q005", "weather report", "ocr", "e06_ferry_storm"),
    Q("q006", "fresh bread", "ocr", "e07_bakery"),
    Q("q007", "coffee break", "ocr", "e08_coffee_break"),
    Q("q008", "half price", "ocr", "e09_laptop"),
    Q("q009", "rose garden", "ocr", "e11_rose_garden"),
    Q("q010", "weekend project", "ocr", "e12_roses"),
    Q("q011", "week two", "ocr", "e13_shed"),
    Q("q012", "bridge is closed", "ocr", "e14_bridge"),
    Q("q013", "lost property", "ocr", "e15_last_train"),
    Q("q014", "fire exit sign", "ocr", "e16_fire_exit"),
    Q("q015", "good night", "ocr", "e17_campfire"),
    Q("q016", "assembly point", "ocr", "e18_fire_drill"),
    Q("q017", "city library", "ocr", "e20_city_library"),
    Q("q018", "pizza night", "ocr", "e23_pizza_night"),
    Q("q019", "order status", "ocr", "e24_parcel"),
    Q("q020", "summit cafe", "ocr", "e26_summit_cafe"),
    Q("q021", "repair cafe", "ocr", "e27_icy_road"),
    Q("q022", "happy birthday", "ocr", "e29_happy_birthday"),
    Q("q023", "swimming pool closed mondays", "ocr", "e32_pool_closed"),
    Q("q024", "beach volleyball", "ocr", "e33_beach"),
    Q("q025", "northern lights", "ocr", "e36_northern_lights"),
    Q("q026", "final round", "ocr", "e38_final_round"),
    Q("q027", "volunteers wanted", "ocr", "e39_hall_renovation"),
    Q("q028", "free entry", "ocr", "e42_sheep_open_day"),
    Q("q029", "packing checklist", "ocr", "e45_ski_tips"),
    Q("q030", "international departures", "ocr", "e48_departures"),
    Q("q031", "surf report", "ocr", "e49_portrait_tide"),
    Q("q032", "game over", "ocr", "e50_vfr_arcade"),
    Q("q033", "volcano model", "ocr", "e35_volcano_model"),
    Q("q034", "part one", "ocr", "e10_laptop_guide"),
    Q("q035", "finish line", "ocr", "e57_finish_line"),
    Q("q036", "hair salon", "ocr", "e55_hair_salon"),
    Q("q037", "sold out tickets", "ocr", "e60_theatre_tour"),
    Q("q038", "cake shop", "ocr", "e62_cake_shop"),
    Q("q039", "no swimming sign", "ocr", "e65_dog_puddle"),
    # speech only
    Q("q040", "soup and bread for lunch by grandpa", "asr", "e01_train_station"),
    Q("q041", "training our new puppy to sit", "asr", "e02_puppy"),
    Q("q042", "check the oil before a long drive", "asr", "e03_wagon"),
    Q("q043", "pigeons stealing the tourists chips", "asr", "e05_fish_market"),
    Q("q044", "ferry delayed by the storm", "asr", "e06_ferry_storm", (("delayed", "late"),)),
    Q("q045", "bakery on our street opening in the morning", "asr", "e07_bakery"),
    Q("q046", "knocked coffee over my laptop", "asr", "e09_laptop"),
    Q("q047", "battery life more important than screen size", "asr", "e10_laptop_guide",
      (("important", "matters"),)),
    Q("q048", "planting roses along the fence", "asr", "e12_roses"),
    Q("q049", "sand the wood before painting", "asr", "e13_shed"),
    Q("q050", "take the bus into town", "asr", "e14_bridge"),
    Q("q051", "last train leaves at midnight", "asr", "e15_last_train"),
    Q("q052", "switch off phones during the film", "asr", "e16_fire_exit"),
    Q("q053", "singing songs around the fire", "asr", "e17_campfire", (("singing", "sang"),)),
    Q("q054", "walk calmly to the playground", "asr", "e18_fire_drill"),
    Q("q055", "brother repairing old bikes", "asr", "e20_city_library"),
    Q("q056", "printer ran out of paper in the meeting", "asr", "e21_printer_meeting"),
    Q("q057", "best lemon cake my aunt makes", "asr", "e23_pizza_night"),
    Q("q058", "parcel lost in the snow last week", "asr", "e24_parcel"),
    Q("q059", "legs hurt after a long hike", "asr", "e26_summit_cafe"),
    Q("q060", "icy road so we walked to school", "asr", "e27_icy_road"),
    Q("q061", "cat sleeping on the piano", "asr", "e29_happy_birthday"),
    Q("q062", "more candles and balloons for the party", "asr", "e30_party_supplies"),
    Q("q063", "towel and sunscreen to bring", "asr", "e32_pool_closed"),
    Q("q064", "coach lost his whistle in the sand", "asr", "e33_beach"),
    Q("q065", "vinegar makes the lava fizz", "asr", "e35_volcano_model"),
    Q("q066", "she won the game by a single point", "asr", "e38_final_round"),
    Q("q067", "thanks for helping paint the walls", "asr", "e39_hall_renovation"),
    Q("q068", "tiny kittens born under a bed", "asr", "e41_kittens_bed"),
    Q("q069", "lost my gloves on the bus", "asr", "e44_gloves_bus"),
    Q("q070", "coffee machine is broken", "asr", "e47_gate_coffee"),
    Q("q071", "boarding soon for the lisbon flight", "asr", "e48_departures"),
    Q("q072", "early low tide this afternoon", "asr", "e49_portrait_tide"),
    Q("q073", "play again press start", "asr", "e50_vfr_arcade"),
    Q("q074", "brush teeth twice a day", "asr", "e54_teeth"),
    Q("q075", "drinking water at each station", "asr", "e57_finish_line"),
    Q("q076", "put my name on the list at the bar", "asr", "e59_open_mic_bar"),
    Q("q077", "show starts in five minutes", "asr", "e60_theatre_tour"),
    Q("q078", "whisk eggs with a little sugar", "asr", "e62_cake_shop"),
    Q("q079", "soap in my hair from the hose", "asr", "e66_car_wash_hose"),
    # metadata only
    Q("q080", "dog walk on a sunny afternoon", "meta", "e02_puppy"),
    Q("q081", "repairing an old station wagon", "meta", "e03_wagon"),
    Q("q082", "coastal town walk with boats and gulls", "meta", "e05_fish_market"),
    Q("q083", "slow breakfast and stretching routine", "meta", "e07_bakery"),
    Q("q084", "quiet afternoon at the office desk", "meta", "e08_coffee_break"),
    Q("q085", "laptop buying guide for students", "meta", "e10_laptop_guide"),
    Q("q086", "tulips and daffodils in spring", "meta", "e11_rose_garden"),
    Q("q087", "makeover of the garden shed", "meta", "e13_shed"),
    Q("q088", "scout camp tents and canoes", "meta", "e17_campfire"),
    Q("q089", "school fire safety drill", "meta", "e18_fire_drill"),
    Q("q090", "family recipes we cook together", "meta", "e23_pizza_night"),
    Q("q091", "lazy sunday with the cat", "meta", "e29_happy_birthday"),
    Q("q092", "summer holiday plans for august", "meta", "e32_pool_closed"),
    Q("q093", "project for the science fair", "meta", "e35_volcano_model"),
    Q("q094", "winter road trip across iceland", "meta", "e36_northern_lights"),
    Q("q095", "renovating the community hall", "meta", "e39_hall_renovation", (("renovating", "renovation"),)),
    Q("q096", "open day at a sheep farm", "meta", "e42_sheep_open_day"),
    Q("q097", "what to bring to the mountains", "meta", "e45_ski_tips"),
    Q("q098", "airport vlog waiting for the plane", "meta", "e48_departures"),
    Q("q099", "retro arcade machines in a basement", "meta", "e50_vfr_arcade"),
    Q("q100", "black sand beaches and geysers", "meta", "e34_volcano"),
    Q("q101", "weekly games on thursday evenings", "meta", "e37_chess_club"),
    Q("q102", "backstage at the jazz festival", "meta", "e60_theatre_tour"),
    Q("q103", "village pancake race", "meta", "e63_pancake_race"),
    Q("q104", "saturday chores cleaning for guests", "meta", "e66_car_wash_hose"),
    # two modalities of the same clip; other clips match each half alone
    Q("q105", "ferry late at the harbour", "ocr+asr", "e04_ferry_harbour"),
    Q("q106", "library printer out of paper", "ocr+asr", "e19_library_printer"),
    Q("q107", "pizza delivery lost in the snow", "ocr+asr", "e22_pizza_snow"),
    Q("q108", "icy road on the mountain pass", "ocr+asr", "e25_mountain_pass"),
    Q("q109", "birthday candles and balloons", "ocr+asr", "e28_birthday"),
    Q("q110", "coach whistle at the swimming pool", "ocr+asr", "e31_swim_coach"),
    Q("q111", "boarding the lisbon flight at gate 12", "ocr+asr", "e46_gate12"),
    Q("q112", "dentist appointment on friday", "ocr+asr", "e53_dentist"),
    Q("q113", "legs hurting after the marathon", "ocr+asr", "e56_marathon"),
    Q("q114", "dog jumped in a muddy puddle at the car wash", "ocr+asr", "e64_car_wash"),
    Q("q115", "volcano on the iceland road trip", "ocr+meta", "e34_volcano"),
    Q("q116", "chess club at the community hall", "ocr+meta", "e37_chess_club"),
    Q("q117", "open mic jazz at the theatre", "ocr+meta", "e58_open_mic"),
    Q("q118", "kittens born on a sheep farm", "asr+meta", "e40_kittens_farm"),
    Q("q119", "packing gloves for a ski trip", "asr+meta", "e43_gloves_ski"),
    Q("q120", "whisking eggs for pancakes", "asr+meta", "e61_pancakes"),
    # the picture only (need a visual retriever such as CLIP)
    Q("q121", "a red ball bouncing on green", "visual", "e51_red_ball"),
    Q("q122", "purple squares spinning on black", "visual", "e52_purple_squares"),
    Q("q123", "a yellow sun above blue waves", "visual", "e49_portrait_tide"),
]

# Function words: never required to match. FILLER: words users add that no clip contains.
STOP = frozenset(
    """a an and are as at be but by for from has have he her his i in is it its of on or she so that the their them
    then there these they this to was were will with you your we our us my me into up out all some every again than
    about above after along also around before below during each near off only onto still through under until
    upon very while who whose why how what when where which now just dont do not""".split()
)
FILLER = frozenset("sign video clip footage saying says someone talking".split())

LICENSE = """# Evaluation corpus license

Every media and data file in this folder (video, audio, `queries.tsv`, `qrels.txt`, `metadata.json`,
`subtitles.json`, `query_modalities.json`, `query_design.json`, `manifest.json`, this `LICENSE.md`) was generated
by `examples/make_eval_corpus.py` in this repository: synthetic shapes and text drawn with Pillow, speech
synthesised with espeak-ng, encoded with PyAV/FFmpeg. `README.md` describes them. No third-party footage,
recordings or voices are included.

The generated media and data, and the README, are dedicated to the public domain under
[CC0 1.0 Universal](https://creativecommons.org/publicdomain/zero/1.0/): you may copy, modify and
distribute them without asking permission.

Fonts: the captions are rendered with DejaVu fonts (Sans, Sans Mono, Serif and their condensed, bold, oblique and
italic faces) from the system's fonts-dejavu packages. Their license (the Bitstream Vera font license; DejaVu's
own changes are public domain) covers the font files, none of which is included here, and places no restriction
on images rendered with them.
Voices: espeak-ng (GPL-3.0-or-later) synthesised the speech; its license covers the program and its voice data,
not the audio it produces.
"""


# ---------------------------------------------------------------------------------------------- text checks


def _stem(w: str) -> str:
    for suf, rep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 3 and not (suf == "s" and w.endswith("ss")):
            w = w[: -len(suf)] + rep
            break
    return w[:-1] if w.endswith("e") and len(w) > 3 else w


def words(text: str) -> set[str]:
    """Content-word stems: lowercase, apostrophes dropped, function words removed, light suffix stripping."""
    toks = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return {_stem(t) for t in toks if t not in STOP}


def clip_fields(c: Clip) -> dict[str, set[str]]:
    return {
        "ocr": set().union(*(words(x.text) for x in c.caps)) if c.caps else set(),
        "asr": words(c.speech.text) if c.speech else set(),
        "meta": words(" ".join([c.meta.title, c.meta.description, *c.meta.tags])) if c.meta else set(),
    }


def source_text(c: Clip, mod: str) -> str:
    if mod == "ocr":
        return " ".join(x.text for x in c.caps)
    if mod == "asr":
        return c.speech.text if c.speech else ""
    return " ".join([c.meta.title, c.meta.description, *c.meta.tags]) if c.meta else ""


def query_words(q: Q) -> set[str]:
    syn = {_stem(a): b for a, b in q.syn}
    out = set()
    for w in words(q.text):
        if w in {_stem(f) for f in FILLER}:
            continue
        out |= words(syn[w]) if w in syn else {w}
    return out


def _norm(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", s.lower().replace("'", "")))


def analyse() -> dict[str, dict]:
    """Per query: the words, which modalities of the relevant clip hold them, the halves and the distractors."""
    fields = {c.id: clip_fields(c) for c in CLIPS}
    out = {}
    for q in QUERIES:
        qw = query_words(q)
        rel = fields[q.rel]
        full = sorted(m for m in ("ocr", "asr", "meta") if qw and qw <= rel[m])
        halves = {m: sorted(qw & rel[m]) for m in ("ocr", "asr", "meta") if qw & rel[m]}
        distractors = []
        for c in CLIPS:
            if c.id == q.rel:
                continue
            shared = {m: sorted(qw & ws) for m, ws in fields[c.id].items() if qw & ws}
            if shared:
                distractors.append({"video_id": c.id, "shared": shared,
                                    "covers_query": qw <= set().union(*fields[c.id].values())})
        out[q.qid] = {"text": q.text, "relevant": q.rel, "modalities": q.mods, "words": sorted(qw),
                      "full_match_in": full, "words_by_modality": halves, "distractors": distractors,
                      "synonyms": dict(q.syn), "clip_has_text_in": sorted(m for m in rel if rel[m])}
    return out


def check_design() -> dict[str, dict]:
    """Assert the intended properties on the text; returns the per-query analysis (written as query_design.json)."""
    errors: list[str] = []
    ids = [c.id for c in CLIPS]
    if len(set(ids)) != len(ids):
        errors.append("duplicate clip ids")
    by_id = {c.id: c for c in CLIPS}
    fields = {c.id: clip_fields(c) for c in CLIPS}
    filler_hits = [(c.id, f) for c in CLIPS for m, ws in fields[c.id].items() for f in FILLER if _stem(f) in ws]
    if filler_hits:
        errors.append(f"filler words occur in clip text: {filler_hits}")
    qids = [q.qid for q in QUERIES]
    if len(set(qids)) != len(qids):
        errors.append("duplicate query ids")
    info = analyse()
    for q in QUERIES:
        a = info[q.qid]
        if q.rel not in by_id:
            errors.append(f"{q.qid}: unknown clip {q.rel}")
            continue
        qw = set(a["words"])
        if not qw:
            errors.append(f"{q.qid}: no content words")
            continue
        for bad, _ in q.syn:
            if bad not in q.text.split():
                errors.append(f"{q.qid}: synonym {bad!r} not in the query")
        if q.text != q.text.lower() or re.search(r"[^a-z0-9 ]", q.text):
            errors.append(f"{q.qid}: queries are typed lowercase without punctuation")
        # Uniqueness: no other clip holds every query word, in whatever modalities.
        others = [d["video_id"] for d in a["distractors"] if d["covers_query"]]
        if others:
            errors.append(f"{q.qid} {q.text!r}: also fully matched by {others}")
        if not a["distractors"] and q.mods != "visual":
            errors.append(f"{q.qid} {q.text!r}: no distractor shares a word")
        if q.mods == "visual":
            if any(qw <= ws for ws in fields[q.rel].values()):
                errors.append(f"{q.qid}: a visual query must not be answerable from the clip's text")
            continue
        mods = q.mods.split("+")
        # Not a copy: a query that repeats a whole sentence/title verbatim is not a user's query.
        for m in mods:
            src = _norm(source_text(by_id[q.rel], m))
            title = _norm(by_id[q.rel].meta.title) if m == "meta" else None
            if len(q.text.split()) >= 3 and _norm(q.text) in (src, title):
                errors.append(f"{q.qid}: copies the {m} text verbatim")
        if len(mods) == 1:
            if a["full_match_in"] != mods:
                errors.append(f"{q.qid} {q.text!r}: fully matched by {a['full_match_in']}, claimed {mods} "
                              f"(words {sorted(qw)}, clip {fields[q.rel]})")
        else:
            m1, m2 = mods
            if a["full_match_in"]:
                errors.append(f"{q.qid} {q.text!r}: one modality ({a['full_match_in']}) answers a two-modality query")
            rel = fields[q.rel]
            if not qw <= rel[m1] | rel[m2]:
                errors.append(f"{q.qid} {q.text!r}: {sorted(qw - rel[m1] - rel[m2])} in neither {m1} nor {m2}")
            for m, other in ((m1, m2), (m2, m1)):
                half = qw & rel[m]
                if not half - rel[other]:
                    errors.append(f"{q.qid}: {m} adds nothing to {other}")
                # Distractors match each half alone, in the same modality.
                if not any(half <= fields[c][m] for c in fields if c != q.rel):
                    errors.append(f"{q.qid} {q.text!r}: no other clip's {m} holds the half {sorted(half)}")
    # Collisions across modalities, as designed: the same word in different modalities of different clips.
    cross = sum(1 for q in QUERIES if q.mods != "visual" and any(
        set(d["shared"]) - set(q.mods.split("+")) for d in info[q.qid]["distractors"]))
    if cross < 0.6 * len(QUERIES):
        errors.append(f"only {cross} queries have a distractor in another modality")
    for w, where in (("train", {"ocr", "asr"}), ("station", {"ocr", "meta"}), ("harbour", {"ocr"}),
                     ("coffee", {"ocr", "asr", "meta"}), ("fire", {"ocr", "asr", "meta"})):
        seen = {m for c in CLIPS for m, ws in fields[c.id].items() if _stem(w) in ws}
        if not where <= seen:
            errors.append(f"collision {w!r}: expected in {sorted(where)}, found in {sorted(seen)}")
    # Captions shown for part of a clip only.
    late_still = [c.id for c in CLIPS if c.scene == "still" and any(x.start > 0 for x in c.caps)]
    early_end = [c.id for c in CLIPS if any(x.end is not None for x in c.caps)]
    if len(late_still) < 5 or len(early_end) < 8:
        errors.append(f"partial captions: {len(late_still)} appear late on a still picture, {len(early_end)} end early")
    for c in CLIPS:
        for x in c.caps:
            if x.style not in STYLES:
                errors.append(f"{c.id}: unknown caption style {x.style}")
            if x.end is not None and (x.end - x.start < 2.5 or x.end > c.seconds):
                errors.append(f"{c.id}: caption {x.text!r} must show >= 2.5 s inside the clip")
            if x.end is None and c.seconds - x.start < 2.5:
                errors.append(f"{c.id}: caption {x.text!r} shows < 2.5 s")
    # Mix of files.
    exts = Counter(c.ext for c in CLIPS)
    n_meta = sum(c.meta is not None for c in CLIPS)
    voices = {c.speech.voice for c in CLIPS if c.speech}
    fonts = {x.font for c in CLIPS for x in c.caps}
    if len(CLIPS) < 40 or exts[".webm"] < 3 or exts[".mkv"] < 3 or exts[".m4a"] < 3:
        errors.append(f"file mix: {len(CLIPS)} clips, {dict(exts)}")
    if not 0.4 <= n_meta / len(CLIPS) <= 0.6:
        errors.append(f"metadata for {n_meta} of {len(CLIPS)} clips (want about half)")
    if len(voices) < 8 or len(fonts) < 8:
        errors.append(f"{len(voices)} voices, {len(fonts)} fonts")
    kinds = Counter(q.mods for q in QUERIES)
    if len(QUERIES) < 80 or sum(v for k, v in kinds.items() if "+" in k) < 12 or kinds["visual"] > 0.05 * len(QUERIES):
        errors.append(f"query mix: {dict(kinds)}")
    if errors:
        raise SystemExit("design check failed:\n  " + "\n  ".join(errors))
    return info


# ---------------------------------------------------------------------------------------------- pictures


def render(clip: Clip, t: float, dur: float, size: tuple[int, int]):
    """One frame of the clip's scene at time t (deterministic: a fixed seed per clip)."""
    from PIL import Image, ImageDraw

    w, h = size
    bg, fg = PALETTES[clip.palette % len(PALETTES)]
    seed = SEED + sum(map(ord, clip.id))
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    p = t / max(dur, 1e-6)
    kind = clip.scene
    if kind == "still":
        # A fixed picture: a vertical gradient and a few seeded shapes; no frame differs from another.
        for y in range(h):
            k = y / h
            d.line([(0, y), (w, y)], fill=tuple(int(c * (0.75 + 0.5 * k)) % 256 for c in bg))
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(h // 3, h - 40))
            d.rectangle([x0, y0, x0 + int(rng.integers(30, 90)), y0 + int(rng.integers(15, 40))], fill=fg)
        d.ellipse([w * 0.6, h * 0.45, w * 0.6 + 50, h * 0.45 + 50], outline=fg, width=3)
    elif kind == "drift":
        for k in range(4):
            x = (rng.uniform(0, w) + t * 30 * (1 + k % 2)) % (w + 60) - 30
            y = rng.uniform(h * 0.3, h * 0.85)
            r = rng.uniform(12, 26)
            d.ellipse([x - r, y - r, x + r, y + r], fill=fg)
    elif kind == "bounce":
        y = h - 40 - (h * 0.45) * abs(math.sin(math.pi * t / 1.1))
        x = w * 0.2 + p * w * 0.6
        d.ellipse([x - 20, y - 20, x + 20, y + 20], fill=fg)
    elif kind == "ball":  # the visual-query clip: a red ball on bright green
        img.paste((40, 190, 60), [0, 0, w, h])
        y = h - 40 - (h * 0.55) * abs(math.sin(math.pi * t / 1.0))
        d.ellipse([w / 2 - 28, y - 28, w / 2 + 28, y + 28], fill=(220, 20, 20))
    elif kind == "spin":  # the visual-query clip: purple squares spinning on black
        img.paste((0, 0, 0), [0, 0, w, h])
        for k, cx in enumerate((w * 0.25, w * 0.5, w * 0.75)):
            a = 2 * math.pi * (t / 2 + k / 5)
            pts = [(cx + 32 * math.cos(a + j * math.pi / 2), h / 2 + 32 * math.sin(a + j * math.pi / 2))
                   for j in range(4)]
            d.polygon(pts, fill=(140, 40, 200))
    elif kind == "sun":  # the visual-query clip: a yellow sun above blue waves
        img.paste((150, 200, 240), [0, 0, w, h])
        d.ellipse([w / 2 - 40, h * 0.18, w / 2 + 40, h * 0.18 + 80], fill=(255, 215, 0))
        for k in range(6):
            y0 = h * 0.55 + k * 22
            pts = [(x, y0 + 8 * math.sin(x / 18 + t * 3 + k)) for x in range(0, w + 8, 8)]
            d.polygon([*pts, (w, h), (0, h)], fill=(20, 60 + 12 * k, 160 + 10 * k))
    elif kind == "sand":
        img.paste((225, 205, 150), [0, 0, w, h])
        sea = h * 0.35 + 10 * math.sin(t * 1.5)
        d.rectangle([0, 0, w, sea], fill=(40, 110, 190))
        for k in range(3):
            x = (k * 110 + t * 25) % (w + 40) - 20
            d.line([(x, sea + 4), (x + 40, sea + 4)], fill=(250, 250, 250), width=3)
    elif kind == "stripes":
        off = int(t * 30) % 40
        for y in range(-40, h + 40, 40):
            d.rectangle([0, y + off, w, y + off + 19], fill=fg)
    elif kind == "waves":
        for k in range(5):
            y0 = h * 0.35 + k * 30
            pts = [(x, y0 + 10 * math.sin(x / 25 + t * 2 + k)) for x in range(0, w + 10, 10)]
            d.line(pts, fill=fg, width=4)
    elif kind == "rain":
        for _ in range(40):
            x = rng.uniform(0, w)
            y = (rng.uniform(0, h) + t * 160) % h
            d.line([(x, y), (x - 3, y + 12)], fill=(170, 170, 190), width=2)
    elif kind == "snow":
        for k in range(60):
            x = (rng.uniform(0, w) + 10 * math.sin(t + k)) % w
            y = (rng.uniform(0, h) + t * 40 * (1 + k % 3)) % h
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(250, 250, 250))
    elif kind == "orbit":
        for k in range(5):
            a = 2 * math.pi * (t / 4 + k / 5)
            x, y = w / 2 + 70 * math.cos(a), h * 0.6 + 45 * math.sin(a)
            d.ellipse([x - 12, y - 12, x + 12, y + 12], fill=fg)
    elif kind == "pulse":
        k = 0.5 + 0.5 * math.sin(2 * math.pi * t / 2.5)
        img.paste(tuple(int(c * (0.6 + 0.6 * k)) % 256 for c in bg), [0, 0, w, h])
        s = 25 + 25 * k
        d.rectangle([w / 2 - s, h * 0.62 - s, w / 2 + s, h * 0.62 + s], fill=fg)
    elif kind == "bars":
        off = int(t * 25) % 60
        for x in range(-60, w + 60, 60):
            d.rectangle([x - off, h * 0.3, x - off + 24, h], fill=fg)
    elif kind == "checker":
        off = int(t * 12) % 40
        for i in range(-1, w // 40 + 2):
            for j in range(0, h // 40 + 2):
                if (i + j) % 2 == 0:
                    d.rectangle([i * 40 + off, j * 40, i * 40 + off + 39, j * 40 + 39], fill=fg)
    elif kind == "confetti":
        r2 = np.random.default_rng(seed + int(t * 2))  # re-scattered twice a second
        for _ in range(50):
            x, y = r2.uniform(0, w), r2.uniform(0, h)
            col = tuple(int(v) for v in r2.integers(80, 256, 3))
            d.rectangle([x, y, x + 6, y + 6], fill=col)
    elif kind == "flicker":
        r2 = np.random.default_rng(seed + int(t * 8))
        for _ in range(12):
            x = w / 2 + r2.normal(0, 40)
            y = h * 0.75 - abs(r2.normal(0, 40))
            r = r2.uniform(10, 30)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(255, int(r2.integers(80, 200)), 0))
    elif kind == "night":
        for k in range(45):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            b = int(140 + 110 * abs(math.sin(t * 2 + k)))
            d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(b, b, b))
    elif kind == "mountains":
        d.polygon([(0, h), (w * 0.25, h * 0.4), (w * 0.5, h), (w * 0.7, h * 0.35), (w, h)], fill=(90, 90, 100))
        d.polygon([(w * 0.2, h * 0.47), (w * 0.25, h * 0.4), (w * 0.3, h * 0.47)], fill=(255, 255, 255))
        d.polygon([(w * 0.64, h * 0.43), (w * 0.7, h * 0.35), (w * 0.76, h * 0.43)], fill=(255, 255, 255))
        for k in range(3):
            x = (k * 120 + t * 20) % (w + 80) - 40
            d.ellipse([x, h * 0.15 + 12 * k, x + 70, h * 0.15 + 12 * k + 22], fill=(240, 240, 240))
    elif kind == "traffic":
        d.rectangle([0, h * 0.55, w, h * 0.85], fill=(80, 80, 80))
        for k in range(4):
            x = (k * 90 + t * (50 + 15 * k)) % (w + 60) - 60
            y = h * 0.58 + (k % 2) * 35
            colour = [(230, 60, 60), (60, 160, 230), (240, 200, 40), (240, 240, 240)][k]
            d.rectangle([x, y, x + 50, y + 22], fill=colour)
    elif kind == "crowd":
        for k in range(30):
            x = (rng.uniform(0, w) + t * (20 + 10 * (k % 4))) % w
            y = rng.uniform(h * 0.45, h * 0.95)
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=fg)
    elif kind == "flowers":
        img.paste((30, 110, 50), [0, 0, w, h])
        for k in range(9):
            x = rng.uniform(20, w - 20) + 6 * math.sin(t * 2 + k)
            y = rng.uniform(h * 0.4, h * 0.9)
            d.ellipse([x - 11, y - 11, x + 11, y + 11], fill=(240, 120, 170))
    elif kind == "bubbles":
        for k in range(20):
            x = rng.uniform(0, w) + 5 * math.sin(t * 3 + k)
            y = h - ((rng.uniform(0, h) + t * 35 * (1 + k % 2)) % h)
            r = 4 + k % 6
            d.ellipse([x - r, y - r, x + r, y + r], outline=fg, width=2)
    elif kind == "aurora":
        for k in range(4):
            y0 = h * 0.35 + k * 18
            pts = [(x, y0 + 14 * math.sin(x / 40 + t * 1.5 + k)) for x in range(0, w + 10, 10)]
            d.line(pts, fill=(40, 200 - 25 * k, 120), width=8)
    elif kind == "board":
        for i in range(8):
            for j in range(5):
                on = int(t * 4 + i * 3 + j * 5) % 7 < 4
                x, y = 20 + i * 36, h * 0.35 + j * 28
                d.rectangle([x, y, x + 28, y + 16], fill=(255, 190, 40) if on else (60, 50, 20))
    elif kind == "jerky":
        r2 = np.random.default_rng(seed + int(t * 10))
        for _ in range(3):
            x, y = r2.integers(10, w - 60), r2.integers(int(h * 0.45), h - 40)
            d.rectangle([x, y, x + 50, y + 30], fill=(0, 230, 230))
    else:
        raise ValueError(kind)
    return img


def draw_caption(img, cap: Cap) -> None:
    style = dict(STYLES[cap.style])
    synth.draw_text(img, cap.text, font=cap.font, size=cap.size, max_size=cap.max_size, **style)


def frame_times(clip: Clip, dur: float) -> list[float]:
    if not clip.vfr:
        return [i / FPS for i in range(int(round(dur * FPS)))]
    out, t, k = [], 0.0, 0
    steps = [0.02, 0.04, 0.12, 0.06]  # variable frame rate: a repeating pattern of frame durations
    while t < dur - 1e-9:
        out.append(round(t, 3))
        t += steps[k % len(steps)]
        k += 1
    return out


def caption_end(cap: Cap, dur: float) -> float:
    return dur if cap.end is None else cap.end


# ---------------------------------------------------------------------------------------------- encoding


def speak(s: Speech) -> np.ndarray:
    try:
        return synth.speak(s.text, voice=s.voice, speed=s.speed, gap=s.gap, rate=AUDIO_RATE)
    except MmfuseError as e:
        raise SystemExit(str(e)) from None


def build_clip(clip: Clip, out: Path) -> dict:
    speech = speak(clip.speech) if clip.speech else None
    dur = float(clip.seconds)
    audio = None
    if speech is not None:
        end = clip.speech.start + len(speech) / AUDIO_RATE
        dur = max(dur, math.ceil((end + SPEECH_TAIL) * 2) / 2)
        audio = np.zeros(int(round(dur * AUDIO_RATE)), np.float32)
        s0 = int(round(clip.speech.start * AUDIO_RATE))
        audio[s0:s0 + len(speech)] = speech
    path = out / f"{clip.id}{clip.ext}"
    display = (SIZE[1], SIZE[0]) if clip.rotation % 180 else SIZE
    codec = "libvpx-vp9" if clip.ext == ".webm" else "libx264"
    with synth.MediaWriter(
        path, size=SIZE if clip.scene else None, fps=FPS, vfr=clip.vfr, rotation=clip.rotation, video_codec=codec,
        video_options=synth.COMPACT_VIDEO_OPTIONS[codec], threads=1,
        audio_rate=AUDIO_RATE if audio is not None else None, audio_bit_rate=AUDIO_BIT_RATE, bitexact=True,
        metadata={"comment": "generated by mmfuse examples/make_eval_corpus.py; CC0 1.0"},
    ) as w:
        if clip.scene:
            for t in frame_times(clip, dur):
                img = render(clip, t, dur, display)
                for cap in clip.caps:
                    if cap.start <= t < caption_end(cap, dur):
                        draw_caption(img, cap)
                w.frame(img, t)
            w.end_video()
        if audio is not None:
            w.write_audio(audio)
    caps = []
    for cap in clip.caps:
        end = caption_end(cap, dur)
        caps.append({"text": cap.text, "start": cap.start, "end": end, "style": cap.style, "font": cap.font,
                     "size": cap.size, "over_still_picture": clip.scene == "still",
                     "appears_after_start": cap.start > 0, "disappears_before_end": end < dur})
    return {
        "video_id": clip.id, "file": path.name, "container": clip.ext.lstrip("."), "duration": dur,
        "has_video": clip.scene is not None, "has_audio": audio is not None,
        "coded_size": list(SIZE) if clip.scene else None,
        "display_size": list(display) if clip.scene else None, "rotation": clip.rotation,
        "variable_frame_rate": clip.vfr, "fps": None if not clip.scene or clip.vfr else FPS,
        "scene": clip.scene, "desc": clip.desc, "screen_text": caps,
        "speech": None if clip.speech is None else {
            "text": clip.speech.text, "voice": clip.speech.voice, "speed_wpm": clip.speech.speed,
            "word_gap_10ms": clip.speech.gap, "start": clip.speech.start,
            "end": round(clip.speech.start + len(speech) / AUDIO_RATE, 3)},
        "has_metadata": clip.meta is not None,
    }


def build(out: Path, only: set[str] | None = None, jobs: int = 2) -> None:
    info = check_design()
    out.mkdir(parents=True, exist_ok=True)
    if only is None:
        for old in out.iterdir():
            if old.suffix in (".mp4", ".m4a", ".webm", ".mkv", ".wav"):
                old.unlink()
    todo = [c for c in CLIPS if only is None or c.id in only]
    # One fresh process per clip: an encoder's output was seen to depend on what earlier encoders did in the same
    # process (same frames, other bytes), so a clip's bytes would depend on the clips built before it.
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx, max_tasks_per_child=1) as pool:
        manifest = list(pool.map(build_clip, todo, [out] * len(todo)))
    for m in manifest:
        print(f"{m['file']}: {m['duration']:.1f} s, {(out / m['file']).stat().st_size / 1024:.0f} KiB", file=sys.stderr)
    if only is not None:
        return

    def dump(name: str, obj) -> None:
        (out / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("manifest.json", manifest)
    dump("metadata.json", [{"video_id": c.id, "file": f"{c.id}{c.ext}", "title": c.meta.title,
                            "description": c.meta.description, "tags": list(c.meta.tags)} for c in CLIPS if c.meta])
    dump("subtitles.json", [{"video_id": c.id, "desc": c.desc, "subtitle": c.speech.text if c.speech else ""}
                            for c in CLIPS])
    dump("query_modalities.json", {q.qid: q.mods for q in QUERIES})
    dump("query_design.json", info)
    (out / "queries.tsv").write_text("".join(f"{q.qid}\t{q.text}\n" for q in QUERIES), encoding="utf-8")
    (out / "qrels.txt").write_text("".join(f"{q.qid} 0 {q.rel} 1\n" for q in QUERIES), encoding="utf-8")
    (out / "LICENSE.md").write_text(LICENSE, encoding="utf-8")


def summary() -> str:
    kinds = Counter(q.mods for q in QUERIES)
    exts = Counter(c.ext for c in CLIPS)
    lines = [f"{len(CLIPS)} clips: " + ", ".join(f"{k} {v}" for k, v in sorted(exts.items())),
             f"metadata: {sum(c.meta is not None for c in CLIPS)}; speech: {sum(c.speech is not None for c in CLIPS)}; "
             f"voices: {dict(Counter(c.speech.voice for c in CLIPS if c.speech))}",
             f"fonts: {dict(Counter(x.font for c in CLIPS for x in c.caps))}",
             f"{len(QUERIES)} queries: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "eval-corpus")
    ap.add_argument("--check", action="store_true", help="only check the design and print a summary")
    ap.add_argument("--only", help="comma-separated clip ids: encode just these (no json files written)")
    ap.add_argument("--jobs", type=int, default=2, help="clips encoded in parallel (the output does not depend on it)")
    args = ap.parse_args()
    if args.check:
        check_design()
        print(summary())
        return
    build(args.out, set(args.only.split(",")) if args.only else None, args.jobs)


if __name__ == "__main__":
    main()
