"""The 37 Oxford-IIIT Pet breeds, in the dataset's class-id order.

Cat breeds are capitalised and dog breeds are lower case, as in the dataset's file names.
Class ids in ``annotations/list.txt`` are 1-based positions in this tuple; the project's
``label`` is the 0-based position.
"""

from __future__ import annotations

BREEDS: tuple[str, ...] = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
    "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau",
    "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees",
    "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon", "miniature_pinscher",
    "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard",
    "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx",
    "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)
NUM_BREEDS = len(BREEDS)
SPECIES: tuple[str, ...] = ("cat", "dog")  # species id 1 and 2 in list.txt


def species_of(breed: str) -> str:
    """'cat' for the capitalised (cat) breeds, 'dog' otherwise."""
    return "cat" if breed[:1].isupper() else "dog"


def breed_index_within_species(breed: str) -> int:
    """1-based id of a breed among the breeds of its species (list.txt's BREED ID column)."""
    same = [b for b in BREEDS if species_of(b) == species_of(breed)]
    return same.index(breed) + 1


def breed_of_image(image_id: str) -> str:
    """Breed name from an image id such as ``Abyssinian_100`` or ``great_pyrenees_7``."""
    return image_id.rsplit("_", 1)[0]
