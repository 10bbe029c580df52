"""The danger taxonomy: where someone can get hurt, which verdict that calls for, and which hand-over fits it.

The paper's *needs intervention* (§2.3, A.4) is for contexts where someone's safety or life is at risk and a
human — emergency services, a professional — must step in. It is not for advice-seeking: asking how long basil
lives or whether a flu shot needs an appointment is casual. Below that, a *dangerous act* (drink-driving, mixing
bleach and ammonia) needs caution: the reply warns, names the risk and one safer step.

Each category carries

- its verdict level (``emergency`` → needs intervention, ``act`` → needs caution),
- the hand-over that fits it (a suicide crisis line is wrong for a poisoning, a fire or domestic violence),
- a safety rule of thumb, the RoT a verdict in this category gives (paper §4.1: a verdict comes with its reasons),
- its sub-categories; the team-written corpus (``data/danger/``) holds one sub-category of each category out of
  training (`HELD_OUT_SUBCATEGORIES`) so that the held-out numbers measure generalisation to unseen situations.

Hand-over texts are per region (`HANDOVER_REGIONS`); a region lacking a number for a kind falls back to the
international text ("your local emergency number") with a warning, never to silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)


class Level(str, Enum):
    EMERGENCY = "emergency"  # needs intervention: a human must step in now
    ACT = "act"  # needs caution: a dangerous act; warn, name the risk and a safer step


class Handover(str, Enum):
    """Who should take over: chosen by category."""

    EMERGENCY = "emergency"  # emergency services
    POISON = "poison"  # poison control (and emergency services if the person is unresponsive)
    ABUSE = "abuse"  # a domestic-violence / abuse line, and emergency services if in danger now
    CRISIS = "crisis"  # a suicide & crisis line


@dataclass(frozen=True)
class Category:
    name: str
    title: str
    level: Level
    handover: Handover | None
    rot: str
    subcategories: tuple[str, ...]
    #: for dangerous acts: the risk and one concrete safer step, said in a warning reply
    warning: str = ""


CATEGORIES: tuple[Category, ...] = (
    Category(
        "self_harm", "self-harm and suicide", Level.EMERGENCY, Handover.CRISIS,
        "It's important to reach out for help when you're thinking about hurting yourself.",
        ("suicide_plan", "suicidal_thoughts", "self_injury", "intentional_overdose"),
    ),
    Category(
        "medical", "medical emergency", Level.EMERGENCY, Handover.EMERGENCY,
        "You should call emergency services when someone shows signs of a medical emergency.",
        ("breathing", "unconscious", "chest_pain", "stroke", "seizure", "severe_bleeding", "anaphylaxis",
         "infant_fever"),
    ),
    Category(
        "poisoning", "poisoning and overdose", Level.EMERGENCY, Handover.POISON,
        "You should call poison control or emergency services right away when someone may have been poisoned.",
        ("household_chemical", "medicine_overdose", "button_battery", "plant_or_mushroom", "drug_overdose"),
    ),
    Category(
        "violence", "violence and abuse", Level.EMERGENCY, Handover.ABUSE,
        "No one deserves to be hurt or threatened, and it's right to get help to be safe.",
        ("domestic_abuse", "intruder", "assault", "being_threatened", "child_abuse"),
    ),
    Category(
        "threat_to_others", "threats to others and weapons", Level.EMERGENCY, Handover.EMERGENCY,
        "It's wrong to hurt or threaten to hurt other people.",
        ("threat_to_kill", "planned_attack", "weapon", "harming_someone"),
    ),
    Category(
        "hazard", "fire, gas, carbon monoxide, water and storms", Level.EMERGENCY, Handover.EMERGENCY,
        "You should get to safety and call emergency services when there is a fire, gas leak or other hazard.",
        ("fire", "gas_leak", "carbon_monoxide", "drowning", "thin_ice", "storm_or_flood"),
    ),
    Category(
        "endangerment", "endangered children and vulnerable people", Level.EMERGENCY, Handover.EMERGENCY,
        "You should act right away when a child or a vulnerable person is in danger.",
        ("child_in_hot_car", "missing_child", "vulnerable_adult", "child_unsupervised_danger"),
    ),
    Category(
        "impaired_driving", "impaired or distracted driving", Level.ACT, None,
        "It's wrong to drive when you're drunk, high, exhausted or distracted.",
        ("drunk", "drugged", "phone", "drowsy"),
        warning="Driving like that can kill you or someone else; please get a ride, a taxi or wait until you're "
        "sober and rested.",
    ),
    Category(
        "chemical_mixing", "mixing dangerous chemicals", Level.ACT, None,
        "You shouldn't mix cleaning chemicals, because some combinations release toxic gases.",
        ("bleach_ammonia", "bleach_acid", "other_mixtures"),
        warning="Some cleaning products release toxic gas when mixed; use one product at a time, rinse in between "
        "and keep the room ventilated.",
    ),
    Category(
        "unsafe_medicine", "unsafe medicine use", Level.ACT, None,
        "You should take medicine only as directed and check with a pharmacist before changing a dose.",
        ("double_dose", "alcohol_and_medicine", "someone_elses_prescription", "stopping_abruptly"),
        warning="Taking medicine that way can cause an overdose or dangerous interactions; check the label or ask "
        "a pharmacist first.",
    ),
    Category(
        "unsafe_childcare", "unsafe child care", Level.ACT, None,
        "It's wrong to leave a child in a situation where they could get hurt.",
        ("left_alone", "unsafe_sleep", "unsafe_food", "no_car_seat"),
        warning="Young children can get hurt in seconds; keep them supervised and follow the safety guidance for "
        "their age.",
    ),
    Category(
        "risky_act", "risky physical acts", Level.ACT, None,
        "You shouldn't take risks that could seriously injure you or others.",
        ("fireworks", "heights", "water_risk", "fire_or_heat_indoors", "dangerous_challenge"),
        warning="That could seriously injure you; please take the safe way (proper gear, someone with you, or not "
        "at all).",
    ),
)

BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
EMERGENCIES = tuple(c.name for c in CATEGORIES if c.level is Level.EMERGENCY)
ACTS = tuple(c.name for c in CATEGORIES if c.level is Level.ACT)
#: one sub-category of each category the corpus never trains on: the held-out split measures unseen situations
HELD_OUT_SUBCATEGORIES: dict[str, str] = {
    "self_harm": "intentional_overdose",
    "medical": "stroke",
    "poisoning": "button_battery",
    "violence": "intruder",
    "threat_to_others": "weapon",
    "hazard": "carbon_monoxide",
    "endangerment": "vulnerable_adult",
    "impaired_driving": "drowsy",
    "chemical_mixing": "bleach_acid",
    "unsafe_medicine": "stopping_abruptly",
    "unsafe_childcare": "no_car_seat",
    "risky_act": "dangerous_challenge",
}


def category(name: str) -> Category:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown danger category {name!r}; known: {sorted(BY_NAME)}") from None


#: region -> hand-over kind -> the words that name whom to contact. "international" has every kind.
HANDOVER_REGIONS: dict[str, dict[Handover, str]] = {
    "international": {
        Handover.EMERGENCY: "please call your local emergency number now",
        Handover.POISON: "please call your local poison control centre now, or your local emergency number if "
        "the person is unresponsive, having trouble breathing or having a seizure",
        Handover.ABUSE: "if you are in danger right now, please call your local emergency number; a local "
        "domestic-violence or victim-support line can help you make a safety plan",
        Handover.CRISIS: "please reach out to a local crisis line or emergency number now, and to someone you trust",
    },
    "us": {
        Handover.EMERGENCY: "please call 911 now",
        Handover.POISON: "please call Poison Control at 1-800-222-1222 now, or 911 if the person is unresponsive, "
        "having trouble breathing or having a seizure",
        Handover.ABUSE: "if you are in danger right now, please call 911; the National Domestic Violence Hotline "
        "(1-800-799-7233, or text START to 88788) can help you make a safety plan",
        Handover.CRISIS: "please call or text the 988 Suicide & Crisis Lifeline (988) now, and reach out to "
        "someone you trust",
    },
    "uk": {
        Handover.EMERGENCY: "please call 999 now",
        Handover.POISON: "please call 999 if the person is unresponsive, having trouble breathing or having a "
        "seizure, otherwise NHS 111 for advice now",
        Handover.ABUSE: "if you are in danger right now, please call 999; the National Domestic Abuse Helpline "
        "(0808 2000 247) is free and open 24 hours",
        Handover.CRISIS: "please call Samaritans on 116 123 (free, 24 hours) now, and reach out to someone you trust",
    },
    "eu": {
        Handover.EMERGENCY: "please call 112 now",
    },
    "au": {
        Handover.EMERGENCY: "please call 000 now",
        Handover.POISON: "please call the Poisons Information Centre on 13 11 26 now, or 000 if the person is "
        "unresponsive, having trouble breathing or having a seizure",
        Handover.ABUSE: "if you are in danger right now, please call 000; 1800RESPECT (1800 737 732) can help you "
        "make a safety plan",
        Handover.CRISIS: "please call Lifeline on 13 11 14 now, and reach out to someone you trust",
    },
    "ca": {
        Handover.EMERGENCY: "please call 911 now",
        Handover.CRISIS: "please call or text 9-8-8 (Suicide Crisis Helpline) now, and reach out to someone you "
        "trust",
    },
}

OPENINGS: dict[Handover, str] = {
    Handover.EMERGENCY: "This sounds like an emergency, and a real person needs to help right now: ",
    Handover.POISON: "This could be a poisoning, and every minute counts: ",
    Handover.ABUSE: "I'm worried about your safety, and a real person should help with this: ",
    Handover.CRISIS: "I'm really sorry you're going through this, and I'm worried about you. You deserve support "
    "from a real person: ",
}


def check_region(region: str) -> str:
    """The region key, lower-cased; an unknown one is a clear error (at start, not at the first emergency)."""
    key = region.strip().lower()
    if key not in HANDOVER_REGIONS:
        raise ValueError(f"unknown region {region!r}; known: {sorted(HANDOVER_REGIONS)}")
    return key


def handover_text(kind: Handover | str | None, region: str = "international") -> str:
    """The hand-over reply for a kind of danger in a region. A region with no number for that kind gives the
    international text (with a warning); no kind (an intervention verdict without a category) gives the crisis
    and emergency text together."""
    region = check_region(region)
    if kind is None:
        return (
            "I'm worried about what you've shared, and this is something a real person should help with right now. "
            + _contact(Handover.EMERGENCY, region).capitalize()
            + " if you or someone else is in immediate danger; if you are thinking about harming yourself, "
            + _contact(Handover.CRISIS, region)
            + "."
        )
    kind = Handover(kind)
    return OPENINGS[kind] + _contact(kind, region) + "."


def _contact(kind: Handover, region: str) -> str:
    words = HANDOVER_REGIONS[region].get(kind)
    if words is None:
        log.warning("region %r has no %s contact; using the international text", region, kind.value)
        words = HANDOVER_REGIONS["international"][kind]
    return words


def warning_reply(name: str) -> str:
    """What the agent says to a dangerous act (caution level): the risk and one safer step, then the rule."""
    cat = category(name)
    if cat.level is not Level.ACT:
        raise ValueError(f"{name!r} is an emergency category: it gets a hand-over, not a warning")
    return f"Please don't. {cat.warning} {cat.rot}"


def handover_for(name: str | None, region: str = "international") -> str:
    """The hand-over reply for a verdict's danger category (None: the general text)."""
    return handover_text(category(name).handover if name else None, region)


# --- the team-written danger corpus (data/danger/, datasheet there) ---------------------------------------------

KINDS = ("emergency", "act", "benign")
BENIGN_SUBCATEGORIES = ("metaphor", "safety_conscious", "advice_question", "resolved", "negated", "fiction_or_media")
SPLITS = ("train", "dev", "heldout")
#: writers whose every row is held out: a crowd no model was trained on (the datasheet says who wrote what)
HELD_OUT_WRITERS = ("B",)
#: writers whose rows fit thresholds and are never trained on. A crowd of its own, as the held-out one is: rows of
#: the training writers read as more familiar than a new crowd's, and thresholds fitted on them were too high
#: for writer B (session 18: 89.5% of dev emergencies handed over, 70.1% of held-out ones)
DEV_WRITERS = ("E",)


@dataclass(frozen=True)
class DangerCase:
    """One written situation: the user's turn (`text`) after optional earlier turns (`prefix`), what it is, who
    wrote it, and its split."""

    text: str
    kind: str
    category: str
    subcategory: str
    writer: str
    prefix: tuple[str, ...] = ()
    person: str = ""
    form: str = ""
    tone: str = ""
    split: str = ""

    @property
    def context(self) -> list[str]:
        return [*self.prefix, self.text]

    @property
    def expected_level(self) -> Level | None:
        return None if self.kind == "benign" else Level(self.kind)


def split_of(case: DangerCase) -> str:
    """Held out: every row of a held-out writer (`HELD_OUT_WRITERS`), and every row of a held-out sub-category
    (whoever wrote it); dev: every other row of a dev writer (`DEV_WRITERS`); train: the rest."""
    if case.writer in HELD_OUT_WRITERS or HELD_OUT_SUBCATEGORIES.get(case.category) == case.subcategory:
        return "heldout"
    return "dev" if case.writer in DEV_WRITERS else "train"


def read_corpus(path, splits: tuple[str, ...] = SPLITS) -> list[DangerCase]:
    """The corpus' rows in `splits`; a bad row is an error naming file, line and field."""
    import json
    from pathlib import Path

    path = Path(path)
    cases = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{where}: not JSON ({exc})") from None
            if not isinstance(raw, dict):
                raise ValueError(f"{where}: a row must be a JSON object")
            for key in ("text", "kind", "category", "subcategory", "writer"):
                if not isinstance(raw.get(key), str) or not raw[key].strip():
                    raise ValueError(f"{where}: field {key!r} must be a non-empty string")
            prefix = raw.get("prefix") or []
            if not isinstance(prefix, list) or not all(isinstance(t, str) and t.strip() for t in prefix):
                raise ValueError(f"{where}: field 'prefix' must be a list of non-empty strings")
            if raw["kind"] not in KINDS:
                raise ValueError(f"{where}: field 'kind' must be one of {KINDS}, got {raw['kind']!r}")
            cat = BY_NAME.get(raw["category"])
            if cat is None:
                raise ValueError(f"{where}: field 'category': unknown {raw['category']!r}; known: {sorted(BY_NAME)}")
            allowed = BENIGN_SUBCATEGORIES if raw["kind"] == "benign" else cat.subcategories
            if raw["subcategory"] not in allowed:
                raise ValueError(f"{where}: field 'subcategory': {raw['subcategory']!r} is not one of {allowed}")
            if raw["kind"] != "benign" and raw["kind"] != cat.level.value:
                raise ValueError(
                    f"{where}: field 'kind': {raw['category']} is {cat.level.value!r}, not {raw['kind']!r}"
                )
            case = DangerCase(
                raw["text"].strip(), raw["kind"], raw["category"], raw["subcategory"], raw["writer"],
                tuple(t.strip() for t in prefix), str(raw.get("person", "")), str(raw.get("form", "")),
                str(raw.get("tone", "")),
            )
            split = split_of(case)
            if raw.get("split", split) != split:
                raise ValueError(f"{where}: field 'split' is {raw['split']!r} but the split rule gives {split!r}")
            if split in splits:
                cases.append(DangerCase(**{**case.__dict__, "split": split}))
    return cases
