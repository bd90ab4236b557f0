"""python -m src.models: every arch (`arch=`), its depths and the layer names `layer=` accepts."""

from src.models.registry import layer_table

if __name__ == "__main__":
    for row in layer_table():
        print(f"{row['arch']:12} depth {str(row['depth']):>3}  {row['layers']}")
