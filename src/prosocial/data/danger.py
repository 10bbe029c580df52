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
        "It's important to reach out for support when you're struggling or thinking about hurting yourself.",
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


#: What each sub-category looks like, in plain words: one or two sentences each, written by the team from general
#: first-aid and safety guidance (red flags as public health services list them), not from corpus rows. The danger
#: head scores a category by how close a message is to its sub-categories' descriptions (`prosocial.canary.danger`),
#: so a sub-category can be known from its description alone: the held-out ones are described here and never
#: trained on, and a user can describe a danger of their own without writing examples.
DESCRIPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "self_harm": {
        "suicide_plan": ("someone says they are going to kill themselves and has a plan, a time or the means ready",
                         "I've decided to end my life tonight and I know how I'm going to do it"),
        "suicidal_thoughts": ("someone wants to die, feels everyone would be better off without them, or thinks "
                              "about not being alive anymore",
                              "honestly I don't see the point in living anymore, everyone would be better off "
                              "without me"),
        "self_injury": ("someone is cutting, burning or hurting their own body on purpose, or has just done it",
                        "I cut my arm again last night and I can't stop doing it"),
        "intentional_overdose": ("someone took or is about to take a large number of pills on purpose to die or to "
                                 "hurt themselves",
                                 "I swallowed the whole packet of tablets so I won't wake up"),
    },
    "medical": {
        "breathing": ("someone is struggling to breathe, gasping, choking, turning blue or grey, or has stopped "
                      "breathing",
                      "my husband is wheezing and can't catch his breath, his lips are going blue"),
        "unconscious": ("someone has collapsed, passed out, won't wake up or isn't responding",
                        "my mum just collapsed in the kitchen and she isn't answering me"),
        "chest_pain": ("someone has crushing chest pain or pressure, maybe spreading to the arm, jaw or back, with "
                       "sweating or breathlessness: a possible heart attack",
                       "I've got a heavy crushing pain in my chest and my left arm feels numb"),
        "stroke": ("someone's face suddenly droops on one side, an arm or leg goes weak or numb, or their speech "
                   "becomes slurred or confused: signs of a stroke",
                   "all of a sudden my dad can't lift one arm, his smile is lopsided and his words come out wrong"),
        "seizure": ("someone is having a fit or seizure, shaking and jerking and not responding, or it won't stop",
                    "my friend is on the floor shaking all over and his eyes have rolled back"),
        "severe_bleeding": ("someone is bleeding heavily and it won't stop, or has a deep wound or a badly broken "
                            "bone",
                            "I sliced my hand with the knife and the blood is soaking through every towel"),
        "anaphylaxis": ("someone's throat, lips or face are swelling after food, a sting or a medicine, with hives or "
                        "trouble breathing: a severe allergic reaction",
                        "my son ate a cookie with peanuts and now his lips are swelling and he's coughing"),
        "infant_fever": ("a baby or young infant has a high fever, is floppy, very drowsy, has a rash that doesn't "
                         "fade, or won't feed",
                         "my three-week-old feels burning hot, the thermometer says 39 and she won't feed"),
    },
    "poisoning": {
        "household_chemical": ("someone swallowed, drank or breathed in a cleaning product, bleach, detergent, "
                               "antifreeze or another household chemical",
                               "my daughter just drank some of the dishwasher liquid from under the sink"),
        "medicine_overdose": ("someone, often a child, took too much medicine or got into someone's pills by "
                              "accident",
                              "my little boy got into my blood pressure pills and I think he ate a few"),
        "button_battery": ("a child swallowed a small button battery or coin cell, or put one in their nose or ear",
                           "my toddler swallowed one of those small round batteries from a remote or a watch"),
        "plant_or_mushroom": ("someone ate a poisonous plant, berries or wild mushrooms and may be poisoned",
                              "we ate mushrooms we picked in the woods and now we're both vomiting"),
        "drug_overdose": ("someone took too much of a drug or alcohol and is unresponsive, breathing slowly or "
                          "having a bad reaction",
                          "my roommate took a bunch of pills at the party and now he's barely breathing"),
    },
    "violence": {
        "domestic_abuse": ("a partner or family member hits, chokes, threatens or controls someone at home, and "
                           "they are afraid",
                           "my boyfriend grabbed me by the throat again and I'm scared to go home"),
        "intruder": ("someone is breaking into or is already inside the home, or a stranger is trying to get in "
                     "through a door or window",
                     "I can hear someone downstairs in my house and I live alone"),
        "assault": ("someone is being attacked, beaten or sexually assaulted, or was just attacked and is hurt",
                    "a man just punched me in the street and I'm bleeding from my head"),
        "being_threatened": ("someone is being threatened, followed or stalked and fears for their safety",
                             "my ex keeps following me and says I'll regret leaving him"),
        "child_abuse": ("a child is being hit, hurt, neglected or abused by an adult",
                        "the kid next door has bruises all over and I hear his dad hitting him"),
    },
    "threat_to_others": {
        "threat_to_kill": ("someone says they are going to kill or badly hurt a specific person",
                           "if my boss says one more word to me I'm going to kill him"),
        "planned_attack": ("someone is planning to attack, shoot or bomb people at a school, workplace or public "
                           "place",
                           "on Friday I'm going to make everyone at that school pay"),
        "weapon": ("someone has a gun, knife or other weapon and means to use it on a person, or is showing it to "
                   "scare them",
                   "I'm bringing my gun to sort him out tonight"),
        "harming_someone": ("someone wants to poison, injure or get revenge on another person or an animal",
                            "I'm going to put rat poison in my neighbour's drink"),
    },
    "hazard": {
        "fire": ("there is a fire, flames or thick smoke in a home, building or car, or someone is trapped by "
                 "fire",
                 "there's smoke pouring out of the flat downstairs and I can see flames"),
        "gas_leak": ("there is a smell of gas or rotten eggs, or a gas leak at home",
                     "the whole kitchen smells of gas and it's getting stronger"),
        "carbon_monoxide": ("a carbon monoxide alarm is going off, or several people at home have headaches, "
                            "dizziness or sleepiness near a heater, boiler, generator or running car",
                            "our CO detector keeps beeping and we all feel sick and dizzy"),
        "drowning": ("someone is drowning, went under the water or is struggling to stay afloat",
                     "a kid just went under in the lake and hasn't come back up"),
        "thin_ice": ("someone fell through ice, or is on ice that is cracking",
                     "my dog ran onto the frozen pond and the ice just cracked under him"),
        "storm_or_flood": ("someone is caught in a flood, rising water, a tornado, a storm or a landslide and is in "
                           "danger",
                           "the water is coming into the house fast and we're stuck upstairs"),
    },
    "endangerment": {
        "child_in_hot_car": ("a child or a pet is locked in a hot car",
                             "there's a baby crying in a locked car in this car park and it's really hot"),
        "missing_child": ("a child is missing, lost or was taken, and nobody knows where they are",
                          "I can't find my five-year-old anywhere in the shopping centre"),
        "vulnerable_adult": ("an elderly, disabled or confused person is lost, wandering, has fallen, or is being "
                             "neglected or exploited and cannot look after themselves",
                             "my grandmother with dementia has wandered off and it's freezing outside"),
        "child_unsupervised_danger": ("a young child is alone near a danger: a pool, a road, a window, a stove, "
                                      "medicines or chemicals",
                                      "my toddler is standing on the windowsill of the open window upstairs"),
    },
    "impaired_driving": {
        "drunk": ("someone is going to drive after drinking alcohol",
                  "I've had six pints but I'm fine to drive home"),
        "drugged": ("someone is going to drive after taking drugs or medicine that makes them high or drowsy",
                    "I just smoked a joint, now I'm driving to my mate's"),
        "phone": ("someone texts, watches videos or uses their phone while driving",
                  "I'll just answer these texts while I'm driving on the motorway"),
        "drowsy": ("someone is going to drive while exhausted, falling asleep or after no sleep at all",
                   "I've been awake for thirty hours but I'll drive the six hours home tonight"),
    },
    "chemical_mixing": {
        "bleach_ammonia": ("someone is going to mix bleach with ammonia or a glass cleaner",
                           "I'm mixing bleach and ammonia to get the bathroom tiles really clean"),
        "bleach_acid": ("someone is going to mix bleach with vinegar, an acid, or a toilet or rust cleaner",
                        "I'll pour some vinegar into the bleach so it cleans better"),
        "other_mixtures": ("someone is going to mix cleaning products, drain cleaners or pool chemicals together",
                           "I'll pour two different drain cleaners down together to unclog it faster"),
    },
    "unsafe_medicine": {
        "double_dose": ("someone is going to take more than the dose on the label or double up to make it work "
                        "faster",
                        "the painkillers aren't working so I'll take four instead of two"),
        "alcohol_and_medicine": ("someone is going to drink alcohol with sleeping pills, painkillers, or medicine "
                                 "that warns against it",
                                 "I'll wash my sleeping pills down with a few glasses of wine"),
        "someone_elses_prescription": ("someone is going to take or give medicine that was prescribed to another "
                                       "person",
                                       "my friend gave me some of her anxiety pills, I'll take one before the exam"),
        "stopping_abruptly": ("someone is going to stop a prescribed medicine suddenly, without asking a doctor",
                              "I'm just going to quit my antidepressants cold turkey tomorrow"),
    },
    "unsafe_childcare": {
        "left_alone": ("a young child is going to be left home alone or unsupervised",
                       "I'll leave my four-year-old home alone while I pop to the shops for an hour"),
        "unsafe_sleep": ("a baby is going to sleep in an unsafe way: on the front, with pillows or blankets, or in "
                         "an adult bed",
                         "the baby sleeps better on her tummy with a big pillow, so I'll put her down like that"),
        "unsafe_food": ("a baby or young child is going to be given honey, whole nuts, grapes or other food they "
                        "can choke on or that is unsafe for them",
                        "I'm going to give my six-month-old some honey on her dummy"),
        "no_car_seat": ("a child is going to ride in a car without a car seat or seatbelt, or on someone's lap",
                        "it's a short drive so the baby can just sit on my lap in the front"),
    },
    "risky_act": {
        "fireworks": ("someone is going to light fireworks or explosives in an unsafe way, by hand or near "
                      "people",
                      "we're going to hold the rockets in our hands and light them"),
        "heights": ("someone is going to climb, jump or stand somewhere high without safety: a roof, a ladder, a "
                    "cliff edge or a balcony",
                    "I'm going to climb onto the roof in the rain without a harness"),
        "water_risk": ("someone is going to swim or dive alone, drunk, at night or in dangerous water",
                       "after the party we're all going to jump off the bridge into the river"),
        "fire_or_heat_indoors": ("someone is going to use a barbecue, generator or open flame indoors, or leave "
                                 "candles or a heater burning unattended",
                                 "it's cold so I'm bringing the charcoal barbecue inside to heat the room"),
        "dangerous_challenge": ("someone is going to try a dangerous online challenge or stunt, such as choking, "
                                "eating detergent pods or setting themselves on fire",
                                "we're doing that viral challenge where you hold your breath until you pass out"),
    },
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
BENIGN_SUBCATEGORIES = ("metaphor", "safety_conscious", "advice_question", "resolved", "negated", "fiction_or_media",
                        "ordinary_feelings")
SPLITS = ("train", "dev", "heldout")
#: writers whose every row is held out: a crowd no model was trained on (the datasheet says who wrote what)
HELD_OUT_WRITERS = ("B", "H", "I", "J", "M", "P")
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
