import zipfile, zarr, fsspec
from tests.unit.data.helpers import write_shapes
def test_x(tmp_path):
    p = str(tmp_path / "s.zip")
    write_shapes("zip::" + p)
    print(zipfile.ZipFile(p).namelist()[:5])
    fs, _ = fsspec.url_to_fs("zip::" + p)
    print(fs, fs.ls("", detail=False), fs.ls("buckets", detail=False))
    g = zarr.open_group("zip::" + p, mode="r")
    print(list(g.keys()), list(g["buckets"].group_keys()))
    assert 0
