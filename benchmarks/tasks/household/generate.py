"""Seeded generator of ALFWorld-style household games from the data that the ``alfworld`` package ships.

A game is a PDDL problem for alfworld's ``alfred.pddl`` domain plus its ``alfred.twl2`` text grammar with
the goal sentence filled in: the same ``game.tw-pddl`` format that ALFWorld's own games use, played by
textworld's ``PddlEnv``. Rooms come from alfworld's 120 scene layouts (receptacles of the floor plan,
object types that the scene holds), placements follow ``constants.VAL_RECEPTACLE_OBJECTS``, goals use
``goal_library`` (PDDL goal and sentence templates) with ALFRED's room constraints
(``constants.GOALS_VALID``), and every game is kept only if alfworld's handcoded expert wins it; the
expert's commands are kept as the reference plan.

Needs the optional ``alfworld`` and ``textworld[pddl]`` packages (the ``bench`` extra).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import pickle
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

TASK_TYPES = ("pick", "clean", "heat", "cool", "look", "pick_two")
DIFFICULTIES = ("standard", "easy", "tiny")
SPLITS = ("train", "test")
ALFRED_TASK_TYPES = {
    "pick": "pick_and_place_simple",
    "clean": "pick_clean_then_place_in_recep",
    "heat": "pick_heat_then_place_in_recep",
    "cool": "pick_cool_then_place_in_recep",
    "look": "look_at_obj_in_light",
    "pick_two": "pick_two_obj_and_place",
}
TASK_LABELS = {"pick": "Pick", "clean": "Clean", "heat": "Heat", "cool": "Cool", "look": "Look", "pick_two": "Pick Two"}

DEFAULT_CACHE_DIR = Path(os.environ.get("HOUSEHOLD_CACHE_DIR") or Path(__file__).resolve().parents[2] / ".cache" / "household")
GENERATOR_VERSION = 4  # bump when generated games change, so stale caches are not reused
MAX_ATTEMPTS = 40  # samples tried per game before giving up
# The expert may not need more than this many commands (ALFWorld's episodes stop at 50).
MAX_EXPERT_STEPS = {"standard": 50, "easy": 25, "tiny": 15}
# Small rooms: receptacles kept besides the needed ones, and distractor object types.
_SMALL_ROOMS = {"easy": {"extra_receptacles": 2, "distractor_types": 3},
               "tiny": {"extra_receptacles": 1, "distractor_types": 1}}

_LAMPS = ("DeskLamp", "FloorLamp")
_LAMP_HOLDERS = {"DeskLamp": ("Desk", "SideTable", "Dresser", "Shelf"),
                 "FloorLamp": ("SideTable", "Dresser", "Desk", "CoffeeTable", "TVStand")}
_SCENE_RECEPTACLE_ALIASES = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}
_ID_SUFFIX = {"SinkBasin": "|SinkBasin", "BathtubBasin": "|BathtubBasin"}  # ALFRED ids: Sink|x|y|z|SinkBasin
_NOT_GOAL_PARENTS = {"Toaster", "TVStand"}
_APPLIANCE = {"clean": "SinkBasin", "heat": "Microwave", "cool": "Fridge"}
_ACTION_PROPERTY = {"clean": "Cleanable", "heat": "Heatable", "cool": "Coolable"}


@dataclass(frozen=True)
class GameSpec:
    """One generated game: where it is on disk, what it asks, and the expert's winning plan."""

    game_id: str
    task_type: str  # one of TASK_TYPES
    goal: str  # e.g. "heat some bread and put it in garbagecan"
    room: str  # Kitchen, LivingRoom, Bedroom or Bathroom
    scene: str  # alfworld floor plan, e.g. "FloorPlan12"
    split: str
    difficulty: str
    seed: int
    index: int
    expert_plan: tuple[str, ...]
    game_file: str  # path of game.tw-pddl (traj_data.json beside it)
    targets: dict[str, str] = field(default_factory=dict)  # object/parent/toggle types (ALFRED names)
    n_receptacles: int = 0
    n_objects: int = 0
    intro: str = ""  # the first observation: the room and "Your task is to: ..."

    @property
    def expert_steps(self) -> int:
        return len(self.expert_plan)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["expert_plan"] = list(self.expert_plan)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GameSpec:
        return cls(**{**data, "expert_plan": tuple(data["expert_plan"])})


# --------------------------------------------------------------------------------------------------
# alfworld's data
# --------------------------------------------------------------------------------------------------


_MISSING = ("The household benchmark needs the optional packages alfworld==0.4.2 and textworld[pddl]==1.7.0 "
            "(pip install 'dspy-fgo[bench]')")


def _require_alfworld():
    try:
        import alfworld.gen.constants as constants
        import alfworld.gen.goal_library as goal_library
        import fast_downward  # noqa: F401  (textworld's PDDL environment needs it)
        import textworld  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_MISSING}: {exc}") from exc
    return constants, goal_library


@lru_cache(maxsize=1)
def _alfworld_dir() -> Path:
    _require_alfworld()
    import alfworld

    return Path(alfworld.__file__).resolve().parent


@lru_cache(maxsize=1)
def game_logic() -> tuple[str, str]:
    """(PDDL domain, text grammar) as alfworld ships them."""
    data = _alfworld_dir() / "data"
    return (data / "alfred.pddl").read_text(), (data / "alfred.twl2").read_text()


@dataclass(frozen=True)
class _Scene:
    name: str
    room: str
    receptacles: tuple[tuple[str, str], ...]  # (ALFRED id, type)
    objects: tuple[str, ...]  # pickupable object types the scene holds
    lamps: tuple[str, ...]


def _pickupable_types() -> set[str]:
    constants, _ = _require_alfworld()
    types = set().union(*constants.VAL_RECEPTACLE_OBJECTS.values())
    return {t for t in types if not t.endswith("Sliced")}


@cache
def _scene(number: int) -> _Scene:
    constants, _ = _require_alfworld()
    layouts = _alfworld_dir() / "gen" / "layouts"
    scene_objects = json.loads((layouts / f"FloorPlan{number}-objects.json").read_text())
    openable = json.loads((layouts / f"FloorPlan{number}-openable.json").read_text())
    static = set(constants.RECEPTACLES) - set(constants.MOVABLE_RECEPTACLES)
    receptacles: list[tuple[str, str]] = []
    for rid in sorted(openable):
        rtype = _SCENE_RECEPTACLE_ALIASES.get(rid.split("|")[0], rid.split("|")[0])
        if rtype in static:
            receptacles.append((rid + _ID_SUFFIX.get(rtype, ""), rtype))
    present = {rtype for _, rtype in receptacles}
    # receptacle types that the scene has but that the layout's point list leaves out (garbage cans,
    # coffee machines, stove burners, toasters...): add them with made-up coordinates
    for raw in sorted(set(scene_objects)):
        rtype = _SCENE_RECEPTACLE_ALIASES.get(raw, raw)
        if rtype in static and rtype not in present:
            count = 4 if rtype == "StoveBurner" else 1
            for k in range(count):
                receptacles.append((f"{rtype}|+0{k}.{number % 100:02d}|+00.00|-0{k}.50" + _ID_SUFFIX.get(rtype, ""), rtype))
            present.add(rtype)
    room = next(r for r, numbers in constants.SCENE_TYPE.items() if number in numbers)
    pickupable = _pickupable_types()
    fits = {o for r in present for o in constants.VAL_RECEPTACLE_OBJECTS.get(r, ())}
    objects = tuple(sorted(o for o in set(scene_objects) if o in pickupable and o in fits))
    lamps = tuple(sorted(lamp for lamp in _LAMPS if lamp in scene_objects and present & set(_LAMP_HOLDERS[lamp])))
    return _Scene(f"FloorPlan{number}", room, tuple(receptacles), objects, lamps)


def _scenes(split: str, room: str) -> list[int]:
    constants, _ = _require_alfworld()
    numbers = constants.TRAIN_SCENE_NUMBERS if split == "train" else constants.TEST_SCENE_NUMBERS
    return sorted(n for n in numbers if n in constants.SCENE_TYPE[room])


# --------------------------------------------------------------------------------------------------
# sampling one game
# --------------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    task_type: str
    scene: _Scene
    object_target: str
    parent_target: str  # "" for look
    toggle_target: str  # "" unless look
    goal: str
    receptacles: list[tuple[str, str]]
    placements: list[tuple[str, str, str]]  # (object id, type, receptacle id)


def _candidate_targets(task_type: str, scene: _Scene) -> list[tuple[str, str, str]]:
    """(object, parent, toggle) triples that make sense in this scene."""
    constants, _ = _require_alfworld()
    val = constants.VAL_RECEPTACLE_OBJECTS
    present = {rtype for _, rtype in scene.receptacles}
    if task_type == "look":
        objects = [o for o in scene.objects if o not in constants.MOVABLE_RECEPTACLES or o in ("Bowl", "Mug", "Cup")]
        return [(o, "", lamp) for lamp in scene.lamps for o in objects]
    if task_type in _APPLIANCE and _APPLIANCE[task_type] not in present:
        return []
    objects = list(scene.objects)
    if task_type in _ACTION_PROPERTY:
        objects = [o for o in objects if o in constants.VAL_ACTION_OBJECTS[_ACTION_PROPERTY[task_type]]]
    parents = sorted(present - _NOT_GOAL_PARENTS - {_APPLIANCE.get(task_type, "")}
                     - ({"BathtubBasin"} if task_type == "clean" else set()))
    triples = []
    for o in objects:
        homes = [r for r in present if o in val.get(r, ())]
        for p in parents:
            # the object must fit the goal receptacle and have somewhere else to start from
            if o in val.get(p, ()) and any(h != p for h in homes):
                triples.append((o, p, ""))
    return triples


def _object_id(otype: str, rng: random.Random) -> str:
    return f"{otype}|{rng.uniform(-3, 3):+06.2f}|{rng.uniform(0, 2):+06.2f}|{rng.uniform(-3, 3):+06.2f}"


def _sample(task_type: str, split: str, difficulty: str, rng: random.Random) -> _Draft | None:
    constants, goal_library = _require_alfworld()
    val = constants.VAL_RECEPTACLE_OBJECTS
    rooms = sorted(constants.GOALS_VALID[ALFRED_TASK_TYPES[task_type]])
    room = rng.choice(rooms)
    scene = _scene(rng.choice(_scenes(split, room)))
    triples = _candidate_targets(task_type, scene)
    if not triples:
        return None
    obj, parent, toggle = rng.choice(triples)
    receptacles = list(scene.receptacles)

    def holders(otype: str, among: list[tuple[str, str]], avoid: str = "") -> list[tuple[str, str]]:
        return [(rid, rt) for rid, rt in among if otype in val.get(rt, ()) and rt != avoid]

    small = _SMALL_ROOMS.get(difficulty)
    if small:
        # a small room: one goal receptacle, the appliance or lamp holder needed, where the target starts
        # (an open surface, never inside a closed one), and one or two more
        keep: list[tuple[str, str]] = []

        def add(choices: list[tuple[str, str]]) -> None:
            choices = [c for c in choices if c not in keep]
            if choices:
                keep.append(rng.choice(choices))

        if parent:
            add([r for r in receptacles if r[1] == parent])
        if task_type in _APPLIANCE:
            add([r for r in receptacles if r[1] == _APPLIANCE[task_type]])
        if toggle:
            add([r for r in receptacles if r[1] in _LAMP_HOLDERS[toggle]])
        visible = [r for r in holders(obj, receptacles, avoid=parent) if r[1] not in constants.OPENABLE_CLASS_SET]
        add(visible or holders(obj, receptacles, avoid=parent))
        extras = [r for r in receptacles if r not in keep]
        rng.shuffle(extras)
        keep += extras[:small["extra_receptacles"]]
        receptacles = sorted(keep)

    placements: list[tuple[str, str, str]] = []
    lamp_holder = None
    if toggle:
        options = [r for r in receptacles if r[1] in _LAMP_HOLDERS[toggle]]
        if not options:
            return None
        lamp_holder = rng.choice(options)
        placements.append((_object_id(toggle, rng), toggle, lamp_holder[0]))

    # the goal's object: 1-2 instances (2-3 for pick two), never already in the goal receptacle type
    homes = holders(obj, receptacles, avoid=parent)
    if small:
        homes = [r for r in homes if r[1] not in constants.OPENABLE_CLASS_SET] or homes
    if not homes:
        return None
    count = ((2, 2) if small else (2, 3)) if task_type == "pick_two" else ((1, 1) if small else (1, 2))
    for _ in range(rng.randint(*count)):
        placements.append((_object_id(obj, rng), obj, rng.choice(homes)[0]))

    # distractors: other object types of the scene that fit a receptacle of the room
    others = [o for o in scene.objects if o != obj and holders(o, receptacles)]
    rng.shuffle(others)
    if small:
        others = others[:small["distractor_types"]]
    for otype in others:
        for _ in range(1 if small else rng.randint(1, 2)):
            placements.append((_object_id(otype, rng), otype, rng.choice(holders(otype, receptacles))[0]))

    template = rng.choice(goal_library.gdict[ALFRED_TASK_TYPES[task_type]]["templates"])
    goal = template.format(obj=obj.lower(), recep=parent.lower(), toggle=toggle.lower(), mrecep="")
    return _Draft(task_type, scene, obj, parent, toggle, goal, receptacles, placements)


# --------------------------------------------------------------------------------------------------
# PDDL problem
# --------------------------------------------------------------------------------------------------


def _pddl_name(alfred_id: str) -> str:
    """ALFRED's id escaping (PlannedGameState.fix_pddl_str_chars)."""
    for old, new in (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_")):
        alfred_id = alfred_id.replace(old, new)
    return alfred_id


def pddl_problem(draft: _Draft, name: str) -> str:
    constants, goal_library = _require_alfworld()
    val = constants.VAL_RECEPTACLE_OBJECTS
    actions = constants.VAL_ACTION_OBJECTS
    receptacles = [(_pddl_name(rid), rtype) for rid, rtype in draft.receptacles]
    locations = {rid: f"loc_bar_{i + 1}" for i, (rid, _) in enumerate(receptacles)}
    start = "loc_bar_0"
    objects = [(_pddl_name(oid), otype, _pddl_name(rid)) for oid, otype, rid in draft.placements]
    otypes = sorted({otype for _, otype, _ in objects} | {draft.object_target} | ({draft.toggle_target} - {""}))
    rtypes = sorted({rtype for _, rtype in receptacles} | ({draft.parent_target} - {""}))

    decl = ["agent1 - agent", f"{start} - location"]
    decl += [f"{loc} - location" for loc in locations.values()]
    decl += [f"{t}Type - otype" for t in otypes] + [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{rid} - receptacle" for rid, _ in receptacles] + [f"{oid} - object" for oid, _, _ in objects]

    init = [f"(atLocation agent1 {start})"]
    for rid, rtype in receptacles:
        init += [f"(receptacleType {rid} {rtype}Type)", f"(receptacleAtLocation {rid} {locations[rid]})"]
        if rtype in constants.OPENABLE_CLASS_SET:
            init.append(f"(openable {rid})")
    for oid, otype, rid in objects:
        init += [f"(objectType {oid} {otype}Type)", f"(inReceptacle {oid} {rid})",
                 f"(objectAtLocation {oid} {locations[rid]})"]
        if otype in _LAMPS:
            init.append(f"(toggleable {oid})")
            continue
        init.append(f"(pickupable {oid})")
        for prop, pred in (("Cleanable", "cleanable"), ("Heatable", "heatable"), ("Coolable", "coolable")):
            if otype in actions[prop]:
                init.append(f"({pred} {oid})")
        if otype in constants.MOVABLE_RECEPTACLES:
            init.append(f"(isReceptacleObject {oid})")
    init += [f"(canContain {r}Type {o}Type)" for r in rtypes for o in otypes if o in val.get(r, ())]

    goal = goal_library.gdict[ALFRED_TASK_TYPES[draft.task_type]]["pddl"].format(
        obj=draft.object_target, recep=draft.parent_target, toggle=draft.toggle_target, mrecep="")
    goal = goal.replace("#", "-").strip()
    assert goal.endswith(")")
    goal = goal[:-1].rstrip()  # goal_library's goals close the (define ...) themselves; we close it below
    indent = "\n        "
    return (f"(define (problem {name})\n    (:domain alfred)\n    (:objects{indent}{indent.join(decl)}\n    )\n"
            f"    (:init{indent}{indent.join(init)}\n    )\n    {goal}\n)\n")


# --------------------------------------------------------------------------------------------------
# textworld + alfworld's wrappers (shared by the expert check and the benchmark environment)
# --------------------------------------------------------------------------------------------------

# fast-downward's PDDL translator swaps sys.stdout and sys.argv while it runs: one load at a time.
TRANSLATE_LOCK = threading.RLock()
_POOL_LOCK = threading.Lock()
_POOL: list[Any] = []  # idle textworld PddlEnv objects (each holds its own copy of libdownward.so)


_TRANSLATIONS: dict[str, Any] = {}
_TRANSLATIONS_MAX = 64
_PARSES_MAX = 4096
_PATCHED = False


def _install_textworld_patches() -> None:
    """Make textworld's PDDL environment fast enough to play, and safe to play from several threads.

    - textworld's ``PddlState`` translates its problem twice (a second, optimized copy only serves its
      planner, which this benchmark never asks for) and ``PddlEnv`` builds a state in ``load`` and again in
      ``reset``: four translations of 0.5-2 s per episode. The translated task is only read, so one
      translation per problem is kept (least recently used ones are dropped) and handed out.
    - Every step derives the text of every admissible command by parsing the same few grammar templates
      and conditions again with tatsu (0.1 s a step); parses are memoized (copies are handed out, as
      derivation mutates them). tatsu parsers are not thread-safe: a parse that is not memoized yet runs
      under a lock.
    - Deriving text deep-copies derivation contexts over and over: the entity infos that its variables
      point to (only read) and, when copying a conditional symbol, the whole game state. Contexts now get
      shallow copies of their variable and mapping dicts (the only parts that derivation updates), and
      symbol copies share the state, facts and entity infos, as ``copy_context`` already did.
    """
    global _PATCHED
    with TRANSLATE_LOCK:
        if _PATCHED:
            return
        import copy

        import fast_downward
        import textworld.logic as tw_logic
        from textworld.envs.pddl import textgen

        translate = fast_downward.pddl2sas

        def pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
            key = _translation_key(domain, problem)
            with TRANSLATE_LOCK:
                result = _TRANSLATIONS.pop(key, None)
                if result is None:
                    result = translate(domain, problem, verbose=verbose, optimize=False)
                _TRANSLATIONS[key] = result  # most recently used last
                while len(_TRANSLATIONS) > _TRANSLATIONS_MAX:
                    _TRANSLATIONS.pop(next(iter(_TRANSLATIONS)))
                return result

        def memoized(parse):
            cache: dict[Any, Any] = {}

            def parse_and_convert(*args, **kwargs):
                key = (args, tuple(sorted(kwargs.items())))
                try:
                    hit = cache.get(key)
                except TypeError:  # unhashable arguments: parse as usual
                    with TRANSLATE_LOCK:
                        return parse(*args, **kwargs)
                if hit is None:
                    with TRANSLATE_LOCK:
                        hit = cache.get(key)
                        if hit is None:
                            hit = parse(*args, **kwargs)
                            if len(cache) < _PARSES_MAX:
                                cache[key] = hit
                            else:
                                return hit
                return copy.deepcopy(hit)

            return parse_and_convert

        shared = ("state", "facts", "entity_infos")

        def symbol_copy(self, context):
            memo: dict[int, Any] = {}
            for ctx in (self.context, context):
                if isinstance(ctx, dict):
                    memo.update((id(ctx[k]), ctx[k]) for k in shared if k in ctx)
            clone = copy.deepcopy(self, memo)
            clone.context = copy_context(context)
            return clone

        def copy_context(context):
            return {"state": context["state"], "facts": context["facts"], "variables": dict(context["variables"]),
                    "mapping": dict(context["mapping"]), "entity_infos": context["entity_infos"]}

        fast_downward.pddl2sas = pddl2sas
        textgen.Symbol.copy = symbol_copy
        textgen.copy_context = copy_context
        textgen._parse_and_convert = memoized(textgen._parse_and_convert)
        tw_logic._parse_and_convert = memoized(tw_logic._parse_and_convert)
        _PATCHED = True


def _translation_key(domain: str, problem: str) -> str:
    return hashlib.sha256(f"{domain}\0{problem}".encode()).hexdigest()


def _translation_file(game_file: str | Path) -> Path:
    return Path(game_file).with_name("translation.pkl.gz")


def _fast_downward_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fast-downward-textworld")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _game_key(game_file: str | Path) -> str:
    data = json.loads(Path(game_file).read_text())
    return _translation_key(data["pddl_domain"], data["pddl_problem"])


def save_translation(game_file: str | Path) -> None:
    """Keep the game's PDDL translation (made while loading it) beside it: later loads skip translating."""
    key = _game_key(game_file)
    with TRANSLATE_LOCK:
        result = _TRANSLATIONS.get(key)
    if result is not None:
        payload = {"fast_downward": _fast_downward_version(), "key": key, "result": result}
        tmp = _translation_file(game_file).with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_bytes(gzip.compress(pickle.dumps(payload), compresslevel=3))
        tmp.replace(_translation_file(game_file))


def preload_translation(game_file: str | Path) -> bool:
    """Put the translation saved beside a game (our own cache file) into the in-memory cache; False if
    there is none to use."""
    path = _translation_file(game_file)
    if not path.exists():
        return False
    key = _game_key(game_file)
    with TRANSLATE_LOCK:
        if key in _TRANSLATIONS:
            return True
    try:
        payload = pickle.loads(gzip.decompress(path.read_bytes()))
    except Exception:  # a damaged or foreign file: translate again
        return False
    if payload.get("key") != key or payload.get("fast_downward") != _fast_downward_version():
        return False
    with TRANSLATE_LOCK:
        _TRANSLATIONS.setdefault(key, payload["result"])
    return True


def acquire_env(expert: bool = False) -> tuple[Any, Any]:
    """(env, handle): a textworld ``PddlEnv`` wrapped like ALFWorld's (demangled names, optionally the
    handcoded expert); give ``handle`` back with :func:`release_env`.

    Loading a ``PddlEnv`` copies and loads fast-downward's 33 MB shared library, so the bare envs are
    pooled and reused (a game is loaded into them with ``load``); the pool holds at most as many as were
    in use at once.
    """
    _require_alfworld()
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredExpert, AlfredInfos
    from textworld.envs import PddlEnv

    _install_textworld_patches()
    with _POOL_LOCK:
        base = _POOL.pop() if _POOL else None
    if base is None:
        with TRANSLATE_LOCK:
            base = PddlEnv()
    base.request_infos = textworld.EnvInfos(admissible_commands=True, won=True, facts=True, extras=["gamefile"])
    env = AlfredInfos(AlfredDemangler(base, shuffle=False))
    if expert:
        env = _expert_class(AlfredExpert)(env, expert_type="handcoded")
    return env, base


@lru_cache(maxsize=1)
def _expert_class(alfred_expert: type) -> type:
    """alfworld's ``AlfredExpert`` with one fix: alfworld 0.4.2's grammar says "move X to Y" where its
    handcoded expert still looks for the word "put" to notice that it let go of an object, so after a
    first put the expert believes it still carries it (pick-two games then end in random moves). The
    expert is told of its own command in the spelling it understands; the game gets the real one."""

    class Expert(alfred_expert):
        def step(self, command):
            self.state, reward, done = self._wrapped_env.step(command)
            self.prev_command = re.sub(r"^move (.+) to (.+)$", r"put \1 in \2", str(command))
            self._gather_infos()
            return self.state, reward, done

    return Expert


def release_env(handle: Any) -> None:
    with _POOL_LOCK:
        if handle not in _POOL:
            _POOL.append(handle)


@contextlib.contextmanager
def pddl_env(expert: bool = False) -> Iterator[Any]:
    """:func:`acquire_env` as a context manager."""
    env, handle = acquire_env(expert)
    try:
        yield env
    finally:
        release_env(handle)


# --------------------------------------------------------------------------------------------------
# expert check
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded_global_random(seed: str) -> Iterator[None]:
    """alfworld's expert draws from the global ``random``: seed it, then put the caller's state back."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def run_expert(game_file: str | Path, max_steps: int = 60, seed: str = "expert") -> tuple[list[str], str] | None:
    """alfworld's handcoded expert on one game: (its commands, the game's first observation) if it wins
    within ``max_steps``, else None."""
    plan: list[str] = []
    with pddl_env(expert=True) as env, _seeded_global_random(seed):
        try:
            with TRANSLATE_LOCK:
                env.load(str(game_file))
                state = env.reset()
            intro = strip_welcome(state["feedback"])
            while not state["won"]:
                if len(plan) >= max_steps:
                    return None
                command = state["extra.expert_plan"][0]
                state, _, _ = env.step(command)
                plan.append(command)
        except Exception:  # the expert gives up (HandCodedAgentFailed/Timeout) or errs: not a usable game
            return None
    return plan, intro


def strip_welcome(observation: str) -> str:
    """ALFWorld's first observation without its "-= Welcome to TextWorld, ALFRED! =-" banner."""
    if observation.lstrip().startswith("-= Welcome"):
        return observation.split("\n\n", 1)[-1].strip()
    return observation.strip()


# --------------------------------------------------------------------------------------------------
# games, cached on disk
# --------------------------------------------------------------------------------------------------


def game_id(split: str, difficulty: str, seed: int, index: int) -> str:
    return f"{split}-{difficulty}-s{seed}-{index:04d}"


def parse_game_id(gid: str) -> tuple[str, str, int, int]:
    split, difficulty, seed, index = gid.split("-")
    return split, difficulty, int(seed[1:]), int(index)


def _check(split: str, difficulty: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, not {difficulty!r}")


def generate_game(index: int, seed: int = 0, split: str = "train", difficulty: str = "standard",
                  cache_dir: str | Path | None = None) -> GameSpec:
    """Game number ``index`` of the (seed, split, difficulty) series; its task type is ``TASK_TYPES[index % 6]``.

    Read from the cache when there, else sampled, written and checked with the expert (resampled until
    the expert wins within ``MAX_EXPERT_STEPS``).
    """
    _check(split, difficulty)
    gid = game_id(split, difficulty, seed, index)
    folder = Path(cache_dir or DEFAULT_CACHE_DIR) / f"v{GENERATOR_VERSION}" / gid
    spec_path = folder / "spec.json"
    if spec_path.exists():
        try:
            spec = GameSpec.from_json(json.loads(spec_path.read_text()))
            if Path(spec.game_file).exists():
                return spec
        except (ValueError, TypeError, KeyError):
            pass
    task_type = TASK_TYPES[index % len(TASK_TYPES)]
    domain, grammar = game_logic()
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(MAX_ATTEMPTS):
        key = f"household|v{GENERATOR_VERSION}|{seed}|{split}|{difficulty}|{index}|{attempt}"
        draft = _sample(task_type, split, difficulty, random.Random(key))
        if draft is None:
            continue
        problem = pddl_problem(draft, name=f"household_{gid.replace('-', '_')}")
        traj_data = {
            "task_type": ALFRED_TASK_TYPES[task_type],
            "pddl_params": {"object_target": draft.object_target, "parent_target": draft.parent_target,
                            "toggle_target": draft.toggle_target, "mrecep_target": "", "object_sliced": False},
            "scene": {"floor_plan": draft.scene.name, "room": draft.scene.room},
            "task_desc": draft.goal,
        }
        game = {"pddl_domain": domain, "grammar": grammar.replace("UNKNOWN GOAL", draft.goal),
                "pddl_problem": problem, "solvable": None, "walkthrough": None}
        game_file = folder / "game.tw-pddl"
        (folder / "traj_data.json").write_text(json.dumps(traj_data, indent=1))
        game_file.write_text(json.dumps(game))
        expert = run_expert(game_file, max_steps=MAX_EXPERT_STEPS[difficulty], seed=key)
        if expert is None:
            continue
        plan, intro = expert
        save_translation(game_file)
        game.update(solvable=True, walkthrough=plan)
        game_file.write_text(json.dumps(game))
        spec = GameSpec(
            game_id=gid, task_type=task_type, goal=draft.goal, room=draft.scene.room, scene=draft.scene.name,
            split=split, difficulty=difficulty, seed=seed, index=index, expert_plan=tuple(plan),
            game_file=str(game_file.resolve()),
            targets={"object": draft.object_target, "parent": draft.parent_target, "toggle": draft.toggle_target},
            n_receptacles=len(draft.receptacles), n_objects=len(draft.placements), intro=intro,
        )
        tmp = spec_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec.to_json(), indent=1))
        tmp.replace(spec_path)
        return spec
    raise RuntimeError(f"No game that the expert wins after {MAX_ATTEMPTS} samples for {gid} ({task_type})")


def generate_games(n: int, seed: int = 0, split: str = "train", difficulty: str = "standard",
                   cache_dir: str | Path | None = None, start: int = 0) -> list[GameSpec]:
    """Games ``start .. start+n-1`` of a series: the six task types in turn (balanced), cached on disk."""
    return [generate_game(i, seed, split, difficulty, cache_dir) for i in range(start, start + n)]


def load_game(gid: str, cache_dir: str | Path | None = None) -> GameSpec:
    """The game with this id (generated again if the cache lost it)."""
    split, difficulty, seed, index = parse_game_id(gid)
    return generate_game(index, seed, split, difficulty, cache_dir)
