"""The vocabulary and sentence templates `builtin:noisy-web` (hfrecipes.builtins.noisy_web) fills, and the
slot filling itself.

A `{slot}` in a template draws from the vocabulary list of that name; a trailing digit makes a second,
independent draw (`{noun2}`); numbers, dates, prices and ids are drawn on demand (`GENERATED_SLOTS`). Lists are
long and every template is used at most once per document, so two documents rarely share a filled sentence.
Each list is one kind of page: dialogue, formal letters and reports, stories and poems, customer reviews,
spam, low-information pages, unsafe forum posts, and non-English paragraphs.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def _words(text: str) -> list[str]:
    """A word list written as one string, so long vocabularies stay readable."""
    return text.split()


# --- vocabulary: a `{slot}` in a template draws from the list of that name (a trailing digit makes a second,
# independent draw: {noun2}). Lists are long so that two documents rarely share a filled sentence.
VOCABULARY: dict[str, list[str]] = {
    "name": _words(
        "Alice Bruno Chen Dalia Emeka Fatima Gustav Hana Ivan Jamal Keiko Lars Maya Nikhil Olga Pedro Quinn Rosa "
        "Samir Tove Umar Vera Wen Ximena Yusuf Zoe Anders Beatriz Carlos Dmitri Elena Farid Greta Hugo Ines Jonas "
        "Kamala Leon Mireille Noor Oscar Priya Ravi Sofia Tariq Ulla Viktor Wanda"
    ),
    "surname": _words(
        "Abara Becker Castillo Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lindqvist Moreau Nakamura "
        "Okafor Petrov Quintero Rossi Santos Tanaka Ueda Varga Weber Xu Yilmaz Zimmermann Andersson Novak Ortega "
        "Pereira Rahman Schultz Torres Walsh Kim Lund Mendes Hughes Baker"
    ),
    "city": _words(
        "Lisbon Oslo Nairobi Osaka Porto Leeds Krakow Tucson Ghent Dakar Halifax Lyon Bergen Quito Tampere Graz "
        "Utrecht Aarhus Perth Cork Valencia Bologna Kyoto Denver Hobart Tallinn Seville Dundee Malmo Riga"
    ),
    "noun": _words(
        "garden ledger bicycle lantern kettle notebook bridge printer harbour orchard violin cabinet tractor "
        "staircase telescope blanket compass ferry warehouse greenhouse satchel windmill chimney bakery "
        "workshop spreadsheet microscope backpack lighthouse mailbox umbrella sailboat piano fountain scarf "
        "keyboard roof pantry barn canoe thermostat suitcase trellis quilt pottery radio ladder tent sketchbook "
        "wheelbarrow aquarium hammock"
    ),
    "adj": _words(
        "quiet crooked bright dusty patient stubborn gentle rusty narrow generous ancient careful cheerful "
        "muddy silver brittle clumsy elegant hollow humble lively modest nervous polished sturdy tangled "
        "weathered awkward curious faded golden hasty peculiar restless sleepy sunlit tender vivid wary wistful "
        "cluttered drowsy fragrant frosty gleaming lopsided mossy"
    ),
    "place": [
        "the old library",
        "the harbour market",
        "the train station",
        "the village square",
        "the hospital wing",
        "the community hall",
        "the riverside path",
        "the mountain hut",
        "the school gym",
        "the night bus",
        "the corner cafe",
        "the public archive",
        "the botanical garden",
        "the ferry terminal",
        "the back office",
        "the county fair",
        "the repair shop",
        "the city museum",
        "the farmers market",
        "the ski lodge",
        "the university lab",
        "the bakery kitchen",
        "the lighthouse keeper's cottage",
        "the empty stadium",
    ],
    "time": [
        "last Tuesday",
        "this morning",
        "after lunch",
        "before the holidays",
        "early next week",
        "at dawn",
        "late on Friday",
        "during the storm",
        "over the weekend",
        "since March",
        "by the end of the month",
        "in the spring",
        "two days ago",
        "after the meeting",
        "before sunrise",
        "at midnight",
        "next autumn",
        "right after the inspection",
        "on the first of June",
        "during the winter break",
    ],
    "verb": _words(
        "repair move paint check borrow deliver sort measure replace inspect clean rebuild sketch label pack "
        "water photograph weigh polish fold test tune unlock archive catalogue"
    ),
    "verbed": _words(
        "repaired moved painted checked borrowed delivered sorted measured replaced inspected cleaned rebuilt "
        "sketched labelled packed watered photographed weighed polished folded tested tuned unlocked archived"
    ),
    "food": [
        "lentil soup",
        "apple pie",
        "fried rice",
        "roasted peppers",
        "fresh bread",
        "mushroom risotto",
        "fish stew",
        "plum jam",
        "cheese scones",
        "ginger tea",
        "barley salad",
        "spiced pumpkin",
        "oat biscuits",
    ],
    "feeling": _words(
        "relieved surprised worried delighted puzzled grateful tired hopeful annoyed proud anxious amused "
        "content homesick embarrassed restless"
    ),
    "project": [
        "the roof repair",
        "the quarterly budget",
        "the school play",
        "the spring catalogue",
        "the new website",
        "the charity run",
        "the kitchen renovation",
        "the audit report",
        "the community garden",
        "the exhibition opening",
        "the office move",
        "the translation project",
        "the bridge survey",
        "the summer festival",
        "the database migration",
        "the grant application",
        "the choir concert",
        "the harvest dinner",
        "the museum tour",
        "the volunteer training",
    ],
    "role": _words(
        "director treasurer coordinator librarian engineer secretary curator manager inspector editor "
        "consultant chair supervisor analyst"
    ),
    "org": [
        "Northfield Housing Trust",
        "Harbourside Medical Group",
        "Greenway Transport",
        "the Riverside Arts Council",
        "Castle Hill Primary School",
        "Meridian Logistics",
        "the Eastbrook Rowing Club",
        "Lakeshore Insurance",
        "Pinecrest Library Services",
        "Oakridge Water Board",
        "the Fairview Tenants Association",
        "Summit Engineering",
        "Brightwater Foods",
        "the Old Mill Heritage Society",
        "Silverline Printing",
        "Westgate Veterinary Clinic",
    ],
    "animal": _words("fox heron badger otter sparrow hare owl deer crow beetle moth salmon wolf lynx swan"),
    "color": _words("amber grey crimson ochre indigo green copper white violet rust teal"),
    "weather": [
        "a thin rain",
        "a cold wind",
        "heavy fog",
        "the first snow",
        "a heat that would not lift",
        "a storm from the west",
        "a bright frost",
        "a low grey sky",
        "soft evening light",
        "a sudden hailstorm",
    ],
    "object": [
        "a brass key",
        "an unsigned letter",
        "a broken watch",
        "a map with one town circled",
        "a jar of buttons",
        "a photograph with the faces torn out",
        "a wooden flute",
        "a ticket for a train that no longer runs",
        "a red ribbon",
        "a notebook full of recipes",
        "a chipped teacup",
        "a coin from a country that had vanished",
        "a carved bird",
        "a box of seeds",
        "a pair of reading glasses",
    ],
    "product": [
        "wireless earbuds",
        "a leather wallet",
        "a coffee grinder",
        "a standing desk",
        "trail running shoes",
        "a cast iron pan",
        "a phone case",
        "a desk lamp",
        "a rain jacket",
        "a yoga mat",
        "a water bottle",
        "a electric kettle",
        "noise cancelling headphones",
        "a backpack",
        "a mechanical keyboard",
    ],
    "issue": [
        "arrived two days late",
        "worked perfectly from the first day",
        "was smaller than the photos suggested",
        "stopped charging after a week",
        "came with clear instructions",
        "had a scratch on the side",
        "is much quieter than my old one",
        "was easy to assemble",
        "feels sturdy and well made",
        "did not match the description",
        "was replaced quickly by support",
        "is good value for the price",
    ],
}

# Numbers and dates are drawn on demand rather than listed.
GENERATED_SLOTS: dict[str, Callable[[random.Random], str]] = {
    "number": lambda rng: str(rng.randint(2, 95)),
    "year": lambda rng: str(rng.randint(1987, 2024)),
    "amount": lambda rng: f"{rng.randint(120, 98000):,}",
    "percent": lambda rng: f"{rng.randint(2, 60)} percent",
    "price": lambda rng: f"{rng.randint(3, 399)}.{rng.choice(('00', '49', '95', '99'))}",
    "id": lambda rng: str(rng.randint(1000, 99999)),
    "rating": lambda rng: str(rng.randint(1, 5)),
}

DIALOGUE_LINES = [
    "Did you manage to {verb} the {noun} before {time}?",
    "Not yet, the {adj} one in {place} kept me busy until {time}.",
    "I honestly thought {project} would take {number} days, not {number2} weeks.",
    "Can you ask {name} whether the {noun} is still in {place}?",
    "She said it was {verbed} {time}, but nobody wrote it down.",
    "That explains why the {noun2} looked so {adj} when I walked past.",
    "Do you want to grab some {food} after we finish?",
    "Only if we can sit somewhere {adj}; I have had enough noise for one day.",
    "By the way, {name} from {city} called about {project}.",
    "Really? I was sure they had given up on it {time}.",
    "Apparently not. They want a {adj} plan and a list of costs by {time2}.",
    "Then we should {verb} the {noun} first and worry about the rest later.",
    "I feel {feeling} about it, to be honest, because the last attempt went badly.",
    "Nobody blames you for that; the weather and the {noun} were against us.",
    "Remember when the {noun} fell over in {place} and {name} laughed for an hour?",
    "How could I forget? We spent the whole evening looking for the {adj} {noun2}.",
    "I will bring my {noun} tomorrow, it is {adj} but it still works.",
    "Great, and I will ask {name} to {verb} the {noun2} while we are out.",
    "Is it true that you are moving to {city} {time}?",
    "Maybe. My sister found a {adj} flat near {place}, and the rent is fair.",
    "You should go. You have talked about {city} for {number} years.",
    "I know, but leaving {project} half finished would bother me.",
    "What did the inspector say about the {noun}?",
    "He wrote that it was {adj} and asked us to {verb} it within {number} days.",
    "Could we borrow a {noun} from {name}, or is that asking too much?",
    "I doubt it; last time it came back {adj} and missing a handle.",
    "Let us make a list, then: the {noun}, the {noun2}, and something for the {noun3}.",
    "Fine, but I am not carrying all of that across {place} on my own.",
    "Did anyone feed the cat while you were in {city}?",
    "Yes, {name} came by twice a day and even {verbed} the {noun}.",
    "I still cannot believe the price of {food} these days.",
    "Neither can I. We paid {price} for a small bowl at {place}.",
    "Shall we start at nine, or is that too early for you?",
    "Nine is fine, as long as there is coffee and the {noun} is working.",
    "I read your notes on {project}; they were clearer than mine.",
    "Thanks, I rewrote them {time} after talking to {name}.",
    "Do you think the {adj} {noun} in {place} is worth keeping?",
    "Only if someone is willing to {verb} it properly this time.",
    "Why is everyone so {feeling} about the meeting?",
    "Because {name} is presenting the numbers, and they are not good.",
    "Tell me honestly, was I too harsh with the new volunteers?",
    "A little, but they learned more in one afternoon than in {number} days of reading.",
    "I found an old {noun} in the attic with your name on it.",
    "That must be from {year}; I thought it was lost when we moved.",
]

FORMAL_SENTENCES = [
    "I am writing on behalf of {org} regarding {project}.",
    "Following our meeting {time}, we have reviewed the proposal in detail.",
    "The committee has approved a budget of {amount} euros for the coming year.",
    "Please find attached the revised schedule, which reflects the changes discussed with {name} {surname}.",
    "We regret to inform you that the {noun} at {place} will remain closed until further notice.",
    "Costs increased by {percent} compared with {year}, mainly because of higher energy prices.",
    "The inspection identified {number} items that require attention before the next review.",
    "Our {role} will contact you {time} to arrange a convenient appointment.",
    "We would be grateful if you could confirm your attendance by {time}.",
    "The results of the survey indicate that {percent} of residents support the proposal.",
    "Several members raised concerns about the condition of the {noun} and the access route to {place}.",
    "In accordance with the agreement signed in {year}, the responsibility lies with {org}.",
    "A full breakdown of expenditure is available from the office of the {role}.",
    "We propose to {verb} the {noun} in two phases in order to limit disruption.",
    "The first phase is expected to begin {time} and last approximately {number} weeks.",
    "Should you have any questions, do not hesitate to contact {name} {surname} directly.",
    "The board thanks all volunteers for their contribution to {project}.",
    "Attendance at the {adj} sessions in {city} exceeded our expectations.",
    "It was agreed that a working group of {number} members would prepare recommendations.",
    "The auditors noted that the records for {year} were complete and accurate.",
    "We acknowledge receipt of your letter and apologise for the delay in replying.",
    "Due to the {adj} state of the building, the event has been moved to {place}.",
    "The contract with {org} will be renewed for a further {number} months.",
    "Applications must include a short statement and the names of two referees.",
    "The minutes of the previous meeting were approved without amendment.",
    "A decision on the remaining items was deferred until more information is available.",
    "The estimated saving for the organisation is {amount} euros over three years.",
    "We have asked the {role} to prepare a summary of the risks and their likely impact.",
    "This report sets out the main findings and the actions recommended for {project}.",
    "Delays in the delivery of the {noun} were caused by a shortage of qualified staff.",
    "Residents of {city} will receive a notice with the new collection dates.",
    "The pilot scheme in {place} showed a reduction in complaints of {percent}.",
    "Staff training on the new {noun} procedures will take place {time}.",
    "We remain committed to transparency and will publish the figures each quarter.",
    "The chair closed the meeting and thanked {name} {surname} for the presentation.",
    "Any objections should be submitted in writing no later than {time}.",
    "Funding from {org} has been confirmed for the second year of the programme.",
    "The working group met {number} times and consulted with local businesses in {city}.",
    "Volunteers from {city} have offered to {verb} the {noun} free of charge.",
    "Insurance cover for {place} is due for renewal {time}.",
    "The {role} reported a small surplus, which will be carried forward.",
    "Complaints about noise near {place} fell sharply after the new rules took effect.",
    "We note with regret the resignation of {name} {surname}, who served since {year}.",
    "Tenders for the {noun} contract closed with {number} valid bids.",
    "A site visit is planned {time}; members wishing to attend should inform the secretary.",
    "The library extension remains on schedule, although the {adj} weather slowed the roofers.",
    "Parking permits for residents will cost {price} euros from next year.",
    "Members asked whether the {noun} could be shared with {org}.",
    "An independent review found no evidence of wrongdoing.",
    "Two new trustees were elected unopposed.",
    "The draft policy on data protection was circulated {time} and comments are welcome.",
    "Energy use in {place} dropped by {percent} after the boiler was replaced.",
    "The annual dinner will take place in {city}; tickets are limited.",
    "It is proposed that meetings move to the first Thursday of each month.",
    "Our thanks go to {org} for the loan of equipment.",
    "The audit committee recommends a review of petty cash procedures.",
    "A grant of {amount} euros was received for the youth programme.",
    "Accessibility improvements at {place} are expected to finish {time}.",
    "The helpline received {number} calls in the last quarter, most about billing.",
    "Please note that the office will be closed during the public holidays.",
]

STORY_SENTENCES = [
    "{name} had lived above {place} in {city} for {number} years without ever opening the {adj} door at the end of the hall.",
    "One morning {weather} came in from the sea, and with it a letter that smelled faintly of {food}.",
    "Inside the envelope there was only {object}.",
    "The {animal} on the windowsill watched with an expression that seemed almost {adj}.",
    "{name} felt {feeling}, then foolish for feeling anything at all about a stranger's mistake.",
    "By noon the whole street knew, because {name2} could never keep a secret longer than a kettle takes to boil.",
    "They walked together to {place}, where the {adj} keeper remembered a family who used to own {object}.",
    "The story the keeper told was long, and parts of it were certainly untrue.",
    "Somewhere in the middle of it {name2} began to cry, quietly, the way people do at weddings.",
    "On the way home the {color} light made the {noun} look like something from a dream.",
    "That night {name} dreamed of a {adj} {animal} carrying {object} across a frozen river.",
    "In the morning the door at the end of the hall was open.",
    "Nobody admitted to opening it, and the {noun} behind it was covered in dust older than the building.",
    "{name} sat down on the floor and read every page of the {adj} diary that lay there.",
    "It belonged to a girl who had waited {number} winters for a ship that never came back to {city}.",
    "The last entry was written in a hurry, the letters leaning as if they wanted to run away.",
    "When the rain stopped, the {animal} was gone from the windowsill and did not return.",
    "Years later {name} would say that this was the week everything started, though nothing had happened.",
    "The grocer on the corner sold {food} and gossip in roughly equal measure.",
    "A {adj} boy chased his hat down the hill while his grandmother shouted advice nobody could follow.",
    "The old clock in {place} struck thirteen, as it did whenever someone in town was about to lie.",
    "There was a rumour that the {noun} had once belonged to a famous thief.",
    "{name2} kept a list of every person who had ever borrowed an umbrella and not returned it.",
    "The ferry was late again, and the passengers passed the time arguing about the {animal}.",
    "Far away, in a house with {color} shutters, someone was writing a reply.",
    "It took {number} days for the reply to arrive, and it raised more questions than it answered.",
    "By the end of summer the door, the diary and {object} were the only things anyone talked about.",
    "The {adj} carpenter offered to {verb} the door so that it would never open again.",
    "{name} refused, and for the first time in years invited the neighbours in for {food}.",
    "Laughter came through the open window and frightened the {animal} in the hedge.",
    "{name2} arrived {time} with {food}, a {adj} umbrella and no explanation.",
    "The postman swore he had delivered {number} letters to that address, all of them unsigned.",
    "At the bottom of the {noun} lay {object}, wrapped in a page torn from an atlas.",
    "Rumours travel faster than ferries in {city}.",
    "Behind {place} grew a {adj} hedge that nobody had trimmed since {year}.",
    "{name} tried to remember the last time anyone had written to the house.",
    "A {color} kite caught in the {noun} flapped all afternoon like a trapped bird.",
    "Her aunt had warned her about doors that open by themselves, but never explained why.",
    "The neighbours held a meeting about the {animal}, which settled nothing.",
    "He counted the steps to {place}: {number}, the same as yesterday.",
    "Under {weather} the harbour looked older than it was.",
    "She wrote the name of the ship on a scrap of paper and hid it in the {noun}.",
    "No one in {city} could say where the {adj} stranger had gone.",
    "{name2} laughed, but there was something {adj} in the laugh.",
    "Every Sunday the bells rang twice for no reason anyone could remember.",
    "The map led past {place}, over a stile, and into a field of {color} grass.",
    "When the tide went out it left {object} on the sand.",
    "That winter {name} learned to {verb} a {noun} and to keep a promise.",
    "The diary's final page was blank except for a drawing of a {animal}.",
    "Somebody had {verbed} the {noun} during the night and left the tools behind.",
]

POEM_LINES = [
    "the {adj} {noun} remembers the {weather}",
    "a {animal} crosses the {color} field at dusk",
    "I kept your {object} in a drawer of {noun}s",
    "and the river answered in a {adj} voice",
    "we were {feeling} in the way of small towns",
    "{weather} over {city}, and no letters",
    "the clock in {place} has stopped at {number}",
    "your hands smelled of {food} and rain",
    "somewhere a {adj} bell, somewhere a door",
    "the {animal} does not know it is a symbol",
    "I counted {number} boats and none were ours",
    "light falls {adj} on the {noun} and the stair",
    "what we call home is a {color} window",
    "the orchard keeps its {adj} arithmetic",
    "we {verbed} the fences and the fences stayed",
    "a map of {city} drawn in {color} ink",
    "even the {noun} is listening tonight",
    "I am learning the grammar of {weather}",
    "the {animal} sleeps in the ruins of {place}",
    "nobody told the sea the war was over",
    "my grandmother's {noun}, {adj} with years",
    "the town forgets the name of every {animal}",
    "and still the {adj} morning comes back",
    "between the {noun} and the {noun2} there is a road",
]

REVIEW_SENTENCES = [
    "I bought {product} for my {noun} and it {issue}.",
    "Ordered {product} {time}; it {issue}, which matters to me.",
    "The seller in {city} was friendly and the packaging was {adj}.",
    "After {number} days of use I can say the {product} {issue}.",
    "My partner thinks it {issue}, but I am not convinced yet.",
    "Good for the price, although the colour is more {color} than shown.",
    "Customer service answered within {number} hours and solved the problem.",
    "I would buy it again, mostly because it {issue}.",
    "Compared with the one I had in {year}, this {product} {issue}.",
    "It replaced a {adj} old model that I had used since {year}.",
    "Delivery to {city} took {number} days, longer than promised.",
    "The instructions were {adj} and missing a page, so I guessed.",
    "Honestly the best purchase I made this year, and I do not say that lightly.",
    "Returned it after a week because the {noun} it was meant for turned out too small.",
    "My {noun} finally has a companion: this {product} {issue}.",
    "Five stars for the design, two for the battery, three for the box.",
    "A friend from {city} recommended it and I see why.",
    "Works as described, nothing more and nothing less.",
    "The strap broke on day {number}, but the replacement was free.",
    "I was {feeling} when it arrived, then {feeling2} once I tried it.",
    "Cheaper shops sell the same thing; this one at least answers email.",
    "Bought two as gifts, and both {issue}.",
    "Smells faintly of plastic at first, which fades after a day or so.",
    "Would be perfect with a longer cable and a quieter switch.",
    "The {product} fits neatly next to the {noun} in my {adj} kitchen.",
    "Ordered on a Monday, arrived on Thursday, no complaints.",
    "I read {number} reviews before buying and they were mostly right.",
    "The colour faded after the first wash, which was disappointing.",
    "My grandmother in {city} uses hers every single day.",
    "Not worth {price} in my opinion, but the shop was helpful.",
    "Sturdy, simple, and it does exactly one thing well.",
    "I had to contact support twice before the refund came through.",
    "Packaging was mostly cardboard, which I appreciate.",
    "Lighter than expected, so it is easy to carry to {place}.",
]

MULTILINGUAL: dict[str, dict[str, list[str]]] = {
    "fr": {
        "templates": [
            "Le {nom} de {ville} est {adj} ce matin.",
            "Nous avons visité le marché avec {prenom} et nous avons acheté du pain.",
            "Il fait froid depuis {nombre} jours, mais les enfants jouent dans le jardin.",
            "Ma voisine {prenom} travaille à la bibliothèque de {ville} depuis longtemps.",
            "Le train pour {ville} part à huit heures et arrive avant midi.",
            "Je pense que le {nom} est trop {adj} pour notre petite maison.",
            "Après le dîner, nous avons parlé de politique et de musique jusqu'à minuit.",
            "Les prix ont augmenté de {nombre} pour cent cette année dans toute la région.",
            "Elle écrit une lettre à sa grand-mère qui habite à la campagne.",
            "Le musée est fermé le lundi, mais il ouvre tard le jeudi soir.",
            "On a trouvé un vieux {nom} dans le grenier de la maison de {prenom}.",
            "La réunion du conseil municipal aura lieu la semaine prochaine à {ville}.",
            "Mon frère étudie la médecine et rentre à {ville} chaque week-end.",
            "Le boulanger du quartier ouvre à six heures, même le dimanche.",
            "Nous avons perdu les clés du {nom} pendant les vacances.",
            "Les enfants ont peint un {nom} {adj} pour la fête de l'école.",
            "Il pleuvait tellement que le match a été annulé.",
            "{prenom} prépare une soupe aux légumes pour toute la famille.",
            "Le nouveau pont de {ville} sera inauguré au printemps.",
            "Personne ne se souvient qui a acheté ce vieux {nom}.",
        ],
        "nom": _words("jardin livre vélo piano bateau fauteuil tableau manteau village pont"),
        "adj": _words("calme ancien magnifique fragile étrange lumineux bruyant"),
        "ville": _words("Lyon Nantes Lille Rennes Dijon Grenoble Bordeaux"),
        "prenom": _words("Camille Julien Élodie Mathieu Chloé Antoine"),
    },
    "de": {
        "templates": [
            "Der {nomen} in {stadt} ist seit gestern {adj}.",
            "Wir haben mit {vorname} auf dem Markt Äpfel und Brot gekauft.",
            "Es regnet schon seit {zahl} Tagen, aber die Kinder spielen draußen.",
            "Meine Nachbarin {vorname} arbeitet seit vielen Jahren in der Bibliothek.",
            "Der Zug nach {stadt} fährt um acht Uhr ab und kommt vor Mittag an.",
            "Ich glaube, der {nomen} ist zu {adj} für unsere kleine Wohnung.",
            "Nach dem Abendessen haben wir lange über Musik und Politik gesprochen.",
            "Die Preise sind in diesem Jahr um {zahl} Prozent gestiegen.",
            "Sie schreibt einen Brief an ihre Großmutter, die auf dem Land wohnt.",
            "Das Museum ist montags geschlossen, aber donnerstags länger geöffnet.",
            "Im Keller von {vorname} haben wir einen alten {nomen} gefunden.",
            "Die Sitzung des Gemeinderats findet nächste Woche in {stadt} statt.",
            "Mein Bruder studiert Medizin und fährt jedes Wochenende nach {stadt}.",
            "Der Bäcker an der Ecke öffnet schon um sechs Uhr.",
            "Wir haben im Urlaub den Schlüssel für den {nomen} verloren.",
            "Die Kinder haben für das Schulfest einen {adj} {nomen} gebaut.",
            "Es hat so stark geregnet, dass das Spiel abgesagt wurde.",
            "{vorname} kocht heute eine Gemüsesuppe für die ganze Familie.",
            "Die neue Brücke in {stadt} wird im Frühling eröffnet.",
            "Niemand weiß mehr, wer diesen alten {nomen} gekauft hat.",
        ],
        "nomen": _words("Garten Schrank Brunnen Bahnhof Tisch Turm Ofen Wagen Hafen"),
        "adj": _words("ruhig alt wunderschön zerbrechlich seltsam hell laut"),
        "stadt": _words("Leipzig Bremen Kassel Freiburg Münster Rostock Augsburg"),
        "vorname": _words("Lena Jonas Sophie Lukas Marie Felix"),
    },
    "es": {
        "templates": [
            "El {sustantivo} de {ciudad} está muy {adj} esta mañana.",
            "Fuimos al mercado con {nombre} y compramos pan y fruta.",
            "Hace frío desde hace {numero} días, pero los niños juegan en la plaza.",
            "Mi vecina {nombre} trabaja en la biblioteca de {ciudad} desde hace años.",
            "El tren a {ciudad} sale a las ocho y llega antes del mediodía.",
            "Creo que el {sustantivo} es demasiado {adj} para nuestra casa.",
            "Después de la cena hablamos de música y de política hasta muy tarde.",
            "Los precios subieron un {numero} por ciento este año en toda la región.",
            "Ella escribe una carta a su abuela, que vive en el campo.",
            "El museo cierra los lunes, pero abre hasta tarde los jueves.",
            "Encontramos un viejo {sustantivo} en el desván de la casa de {nombre}.",
            "La reunión del ayuntamiento será la próxima semana en {ciudad}.",
            "Mi hermano estudia medicina y vuelve a {ciudad} cada fin de semana.",
            "El panadero del barrio abre a las seis, incluso los domingos.",
            "Perdimos las llaves del {sustantivo} durante las vacaciones.",
            "Los niños pintaron un {sustantivo} {adj} para la fiesta del colegio.",
            "Llovió tanto que se suspendió el partido.",
            "{nombre} prepara una sopa de verduras para toda la familia.",
            "El nuevo puente de {ciudad} se inaugurará en primavera.",
            "Nadie recuerda quién compró este viejo {sustantivo}.",
        ],
        "sustantivo": _words("jardín libro coche piano barco sillón cuadro puente pueblo"),
        "adj": _words("tranquilo antiguo precioso frágil extraño luminoso ruidoso"),
        "ciudad": _words("Sevilla Bilbao Granada Zaragoza Málaga Salamanca Cádiz"),
        "nombre": _words("Lucía Javier Carmen Diego Marta Pablo"),
    },
    "ru": {
        "templates": [
            "Сегодня утром в городе {gorod} было очень {prilag}.",
            "Мы ходили на рынок с {skem} и купили хлеб и яблоки.",
            "Уже {chislo} дней идёт дождь, но дети играют во дворе.",
            "Мой сосед {imya} много лет работает в городской библиотеке.",
            "Поезд в {gorod} отправляется в восемь часов и прибывает до обеда.",
            "После ужина мы долго говорили о музыке и о политике.",
            "В этом году цены выросли на {chislo} процентов по всей области.",
            "Она пишет письмо бабушке, которая живёт в деревне.",
            "Музей закрыт по понедельникам, но по четвергам работает допоздна.",
            "На чердаке старого дома мы нашли {predmet}, о котором все забыли.",
            "Заседание городского совета состоится на следующей неделе.",
            "Мой брат учится в университете и мечтает стать инженером.",
            "Пекарня на углу открывается в шесть часов даже по воскресеньям.",
            "Во время отпуска мы потеряли ключи от дачи.",
            "Дети нарисовали {predmet} для школьного праздника.",
            "Дождь был такой сильный, что матч отменили.",
            "{imya} варит овощной суп для всей семьи.",
            "Новый мост в городе {gorod} откроют весной.",
            "Никто не помнит, кто купил этот {predmet}.",
            "Вечером {imya} читает детям сказки и пьёт чай с вареньем.",
        ],
        "prilag": _words("тихо холодно солнечно шумно пасмурно ветрено"),
        "gorod": _words("Казань Самара Томск Пермь Омск Тверь"),
        "imya": _words("Анна Иван Ольга Сергей Марина Павел"),
        "skem": _words("Анной Иваном Ольгой Сергеем Мариной Павлом"),
        "chislo": _words("три пять семь десять двенадцать"),
        "predmet": ["старый сундук", "портрет", "самовар", "граммофон"],
    },
}
MULTILINGUAL["fr"]["nombre"] = MULTILINGUAL["de"]["zahl"] = MULTILINGUAL["es"]["numero"] = [
    str(number) for number in range(2, 40)
]

SPAM_LINES = [
    "BUY {product} NOW at the LOWEST PRICE EVER!!! Only ${price} - visit http://www.best-{slug}-deals.example/{id}",
    "CHEAP {product} cheap {product} best {product} discount {product} free shipping {product}",
    "Click here >>> https://{slug}-offers.example/promo?ref={id} <<< limited time offer, act now!!!",
    "Earn ${amount} a week from home!!! No experience needed. Sign up at http://easy-money-{id}.example",
    "100% GUARANTEED results or your money back. Call now 1-800-{id} and ask for the VIP deal",
    "best price best quality best deal {product} {product} {product} order today",
    "WIN a FREE {product}!!! Just enter your email at www.prize-{slug}.example - {percent} OFF everything",
    "Hot singles in {city} want to meet you tonight, click http://meet-{id}.example",
    "SEO backlinks cheap {product} casino bonus crypto doubling {product} top rated {city} deals",
]

LOW_INFO = [
    "Home | About | Contact | Privacy Policy | Terms",
    "Click here to continue.",
    "Page not found.",
    "Loading...",
    "Subscribe to our newsletter!",
    "Copyright {year}. All rights reserved.",
    "Thanks!",
    "404",
    "Posted by admin on {year}",
]
LOW_INFO_REPEATED = [
    "buy now",
    "the the the",
    "lorem ipsum dolor sit amet",
    "click here",
    "test test",
    "welcome",
]

# Generic, non-operational phrasing of harmful requests and threats, as safety classifiers are tested with.
UNSAFE_PHRASES = [
    "how to build a weapon to hurt people",
    "how to poison someone without getting caught",
    "the easiest way to hurt someone and get away with it",
    "how to make a bomb at home",
    "how to stalk my ex and find out where she lives now",
    "how to buy illegal drugs online without being traced",
    "how to hack into my neighbour's bank account",
    "how to burn down a building and make it look like an accident",
]
UNSAFE_LINES = [
    "Can anyone here explain {phrase}?",
    "I need step by step instructions on {phrase}, no lectures please.",
    "Seriously, tell me {phrase}. I am done being patient.",
    "Someone at work wronged me and I want to know {phrase}.",
    "Asking for real: what is {phrase}? Delete this thread after you answer.",
    "If nobody tells me {phrase} I will find out myself and people will regret it.",
]


class Slots(dict):
    """A `format_map` mapping that draws a fresh value for every slot it is asked for."""

    def __init__(self, rng: random.Random, vocabulary: dict[str, list[str]]):
        super().__init__()
        self.rng = rng
        self.vocabulary = vocabulary

    def __missing__(self, key: str) -> str:
        base = key.rstrip("0123456789")
        if base in GENERATED_SLOTS:
            return GENERATED_SLOTS[base](self.rng)
        return self.rng.choice(self.vocabulary[base])


def fill(template: str, rng: random.Random, vocabulary: dict[str, list[str]] = VOCABULARY) -> str:
    """The template with every slot drawn afresh from `vocabulary` (or generated)."""
    return template.format_map(Slots(rng, vocabulary))
