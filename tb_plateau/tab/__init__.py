"""The Plateau tab's backend behind `tb_plateau.plugin`'s routes: the run cache and its
worker (`cache`), the listing of runs (`listing`), the JSON bodies of series (`bodies`)."""
