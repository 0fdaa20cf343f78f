"""Fill the perceptual-hash bands of images stored before bands existed."""

from django.db import migrations

WIDTHS = (13, 13, 13, 13, 12)


def _bands(phash):
    value = int(phash, 16)
    shift = 64
    for width in WIDTHS:
        shift -= width
        yield (value >> shift) & ((1 << width) - 1)


def fill(apps, schema_editor):
    Image = apps.get_model("curation", "Image")
    ImageHashBand = apps.get_model("curation", "ImageHashBand")
    rows = []
    for image in Image.objects.filter(hash_bands__isnull=True).only("id", "phash").iterator():
        rows.extend(
            ImageHashBand(image_id=image.id, band=band, value=value)
            for band, value in enumerate(_bands(image.phash))
        )
        if len(rows) >= 5000:
            ImageHashBand.objects.bulk_create(rows)
            rows = []
    ImageHashBand.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [("curation", "0002_labelling_leases_negatives_hash_bands")]
    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
